"""The seed-004 task persistence manager, on ta-persistence.

A deployment of the seed's agent platform moves onto this library with two
variables (its factory loads the class from the file)::

    export TA_PERSISTENCE_MODULE=$(python -c "import ta_persistence.adapter as a; print(a.__file__)")
    export TA_PERSISTENCE_CLASS=TaPersistenceManager

plus this library's own settings (``TA_PERSISTENCE_BACKEND=redis``,
``TA_REDIS_HOST``, ... or ``TA_PERSISTENCE_CONFIG``). A module path ending in
``.py`` names this adapter, not a plugin library, so the library ignores
those two variables when it reads its settings.

Where the seed's own package is importable, the manager inherits its
``TaskPersistenceManager``, raises its ``PersistenceCreateError`` /
``PersistenceLoadError`` / ``PersistenceUpdateError`` /
``PersistenceDeleteError`` and returns its ``AgentTask`` model; elsewhere it
uses the same-named classes below and returns dicts.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from ta_persistence import PersistenceError, TaskStore

try:  # the seed's base class, when the seed's package is there
    from sk_agents.persistence.task_persistence_manager import (  # type: ignore
        TaskPersistenceManager as _Base,
    )
except ImportError:  # pragma: no cover - depends on the environment
    _Base = object

try:
    from sk_agents.exceptions import (  # type: ignore
        PersistenceCreateError,
        PersistenceDeleteError,
        PersistenceLoadError,
        PersistenceUpdateError,
    )
except ImportError:

    class _SeedError(Exception):
        def __init__(self, message: str):
            super().__init__(message)
            self.message = message

    class PersistenceCreateError(_SeedError):
        """A task could not be created (it exists, or the engine failed)."""

    class PersistenceLoadError(_SeedError):
        """A task could not be loaded (the engine failed, or it is corrupted)."""

    class PersistenceUpdateError(_SeedError):
        """A task could not be updated (it does not exist, or the engine failed)."""

    class PersistenceDeleteError(_SeedError):
        """A task could not be deleted (it does not exist, or the engine failed)."""


try:
    from sk_agents.tealagents.models import AgentTask as _Model  # type: ignore
except ImportError:
    _Model = None


@contextmanager
def _raising(seed_error: type, what: str):
    """Raises `seed_error` for this library's errors, with them as the cause."""
    try:
        yield
    except PersistenceError as e:
        raise seed_error(f"{what} failed: {e}") from e


class TaPersistenceManager(_Base):  # type: ignore[misc, valid-type]
    """``create``, ``load``, ``update``, ``delete``, ``load_by_request_id`` as
    the seed's manager has them, each raising the seed's error for its
    operation with this library's error as the cause."""

    def __init__(self, app_config: Any = None):
        self._store = TaskStore.open(model=_Model)

    async def create(self, task: Any) -> None:
        with _raising(PersistenceCreateError, "Create"):
            await self._store.create(task)

    async def load(self, task_id: str) -> Any:
        with _raising(PersistenceLoadError, "Load"):
            return await self._store.load(task_id)

    async def update(self, task: Any) -> None:
        with _raising(PersistenceUpdateError, "Update"):
            await self._store.update(task)

    async def delete(self, task_id: str) -> None:
        with _raising(PersistenceDeleteError, "Delete"):
            await self._store.delete(task_id)

    async def load_by_request_id(self, request_id: str) -> Any:
        with _raising(PersistenceLoadError, "Load by request_id"):
            return await self._store.load_by_request_id(request_id)
