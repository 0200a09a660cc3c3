"""Persist AI agents' tasks with the ta-persistence library, from Python.

The same factory, settings, layers and fallback as the Rust library and its
``ta-persist`` CLI: ``config/*.toml`` and the ``TA_*`` variables choose the
engine (memory, redb, sled, Redis, Redis Cluster, a plugin).

>>> import asyncio, ta_persistence
>>> store = ta_persistence.TaskStore.open(env={"TA_PERSISTENCE_BACKEND": "memory"})
>>> asyncio.run(store.load("nope")) is None
True

Every method of :class:`TaskStore` is a coroutine that runs on the module's
own Rust runtime, so the caller's event loop never blocks;
:class:`SyncTaskStore` (``store.sync``) mirrors them for scripts. Tasks go in
as dicts of the seed's JSON shape or as any object with
``model_dump(mode="json")`` (a pydantic ``AgentTask``), and come back as dicts,
or as ``model`` when one was given (``model.model_validate``). Errors are
:class:`PersistenceError` subclasses with ``kind``, ``operation`` and
``detail``. ``docs/python.md`` in the repository has the rest.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ._native import (
    AlreadyExistsError,
    ConfigError,
    ConflictError,
    CorruptedError,
    Documents,
    InvalidInputError,
    NotFoundError,
    PersistenceError,
    PersistenceTimeoutError,
    PluginError,
    UnavailableError,
    UnsupportedError,
)
from ._native import TaskStore as _NativeTaskStore

__all__ = [
    "AlreadyExistsError",
    "ConfigError",
    "ConflictError",
    "CorruptedError",
    "Documents",
    "InvalidInputError",
    "NotFoundError",
    "PersistenceError",
    "PersistenceTimeoutError",
    "PluginError",
    "SyncTaskStore",
    "TaskStore",
    "UnavailableError",
    "UnsupportedError",
]


def _dump(task: Any) -> str:
    if isinstance(task, dict):
        return json.dumps(task)
    dump = getattr(task, "model_dump", None)
    if dump is None:
        raise TypeError(
            f"a task is a dict or has model_dump(mode='json'), not {type(task).__name__}"
        )
    return json.dumps(dump(mode="json"))


def _load(data: Optional[dict], model: Any) -> Any:
    if data is None or model is None:
        return data
    validate = getattr(model, "model_validate", None)
    return validate(data) if validate is not None else model(**data)


class _Common:
    def __init__(self, native: _NativeTaskStore, model: Any = None):
        self._native = native
        self._model = model

    @property
    def backend(self) -> str:
        """The engine in use (``memory`` after a fallback)."""
        return self._native.backend

    @property
    def requested(self) -> str:
        """The engine the settings asked for."""
        return self._native.requested

    @property
    def fallback_cause(self) -> Optional[str]:
        """Why the store runs on memory instead of ``requested``, or None."""
        return self._native.fallback_cause

    def documents(self) -> Documents:
        """The generic document API on the same engine (``get``/``put``/
        ``remove``/``lookup``/``scan``, each with a ``_sync`` twin)."""
        return self._native.documents()

    def stats(self) -> dict:
        """Counters of the engine and its layers."""
        return json.loads(self._native.stats())


class TaskStore(_Common):
    """The agent-task store; every method is a coroutine."""

    @classmethod
    def open(
        cls,
        config: Optional[str] = None,
        env: Optional[dict] = None,
        model: Any = None,
    ) -> "TaskStore":
        """Opens the store the settings choose: the process's ``TA_*``
        variables and ``config`` (a TOML file), with ``env`` on top. Tasks are
        returned as ``model`` if given, else as dicts."""
        return cls(_NativeTaskStore.open(config, env), model)

    @property
    def sync(self) -> "SyncTaskStore":
        """The same store, with blocking methods."""
        return SyncTaskStore(self._native, self._model)

    async def create(self, task: Any) -> None:
        """Stores a new task; ``AlreadyExistsError`` if its id exists."""
        await self._native.create(_dump(task))

    async def load(self, task_id: str) -> Any:
        """The task, or None."""
        return _load(await self._native.load(task_id), self._model)

    async def update(self, task: Any) -> None:
        """Replaces a stored task; ``NotFoundError`` if it is not there."""
        await self._native.update(_dump(task))

    async def delete(self, task_id: str) -> None:
        """Removes a task; ``NotFoundError`` if it is not there."""
        await self._native.delete(task_id)

    async def load_by_request_id(self, request_id: str) -> Any:
        """The oldest task carrying ``request_id`` in one of its items, or None."""
        return _load(await self._native.load_by_request_id(request_id), self._model)

    async def health(self) -> dict:
        """Status (``ok``, ``degraded``, ``down``), backend, message, details."""
        return json.loads(await self._native.health())


class SyncTaskStore(_Common):
    """The agent-task store with blocking methods (the GIL is released while
    they wait)."""

    @classmethod
    def open(
        cls,
        config: Optional[str] = None,
        env: Optional[dict] = None,
        model: Any = None,
    ) -> "SyncTaskStore":
        """As :meth:`TaskStore.open`."""
        return cls(_NativeTaskStore.open(config, env), model)

    def create(self, task: Any) -> None:
        self._native.create_sync(_dump(task))

    def load(self, task_id: str) -> Any:
        return _load(self._native.load_sync(task_id), self._model)

    def update(self, task: Any) -> None:
        self._native.update_sync(_dump(task))

    def delete(self, task_id: str) -> None:
        self._native.delete_sync(task_id)

    def load_by_request_id(self, request_id: str) -> Any:
        return _load(self._native.load_by_request_id_sync(request_id), self._model)

    def health(self) -> dict:
        return json.loads(self._native.health_sync())
