"""The generic document API, and the seed-004 adapter loaded the way the
seed's factory loads a custom class (a file path and a class name)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

import ta_persistence
from conftest import task


def test_documents_versions_preconditions_terms_ttl_and_scan(store):
    docs = store.documents()

    async def run():
        v1 = await docs.put("ns", "a", b"one", terms=[("tag", "x")], precondition="absent")
        with pytest.raises(ta_persistence.AlreadyExistsError):
            await docs.put("ns", "a", b"again", precondition="absent")
        got = await docs.get("ns", "a")
        assert (got["value"], got["version"]) == (b"one", v1)
        assert got["expires_at"] is None
        v2 = await docs.put("ns", "a", b"two", terms=[("tag", "y")], precondition=v1)
        assert v2 != v1
        with pytest.raises(ta_persistence.ConflictError):
            await docs.put("ns", "a", b"stale", precondition=v1)
        with pytest.raises(ta_persistence.NotFoundError):
            await docs.put("ns", "missing", b"x", precondition="present")
        assert await docs.lookup("ns", "tag", "x") == []
        assert await docs.lookup("ns", "tag", "y") == ["a"]
        await docs.put("ns", "b", b"later", ttl=3600)
        b = await docs.get("ns", "b")
        assert b["expires_at"] is not None
        entries, cursor = await docs.scan("ns", limit=1)
        assert [k for k, _ in entries] == ["a"] and cursor is not None
        entries, cursor = await docs.scan("ns", limit=10, cursor=cursor)
        assert [k for k, _ in entries] == ["b"] and cursor is None
        assert await docs.remove("ns", "a", precondition=v2)
        assert not await docs.remove("ns", "a")
        with pytest.raises(ta_persistence.InvalidInputError):
            await docs.put("ns", "c", b"x", precondition="sometimes")
        for ttl in (-1, 0, float("nan"), float("inf"), 1e300):
            with pytest.raises(ta_persistence.InvalidInputError):
                await docs.put("ns", "c", b"x", ttl=ttl)
        for bad in (-1, 2**70, 1.5, b"any", ["present"]):
            with pytest.raises(ta_persistence.InvalidInputError):
                await docs.put("ns", "c", b"x", precondition=bad)
        # namespaces and keys are opaque, as in Rust
        for key in ("run:1", "{tag}", "ü-🚀", "", "a b"):
            await docs.put("odd", key, key.encode())
            assert (await docs.get("odd", key))["value"] == key.encode()
        with pytest.raises(ta_persistence.InvalidInputError):
            await docs.scan("ns", order="sideways")

    asyncio.run(run())
    # the sync twins
    v = docs.put_sync("ns", "s", b"sync")
    assert docs.get_sync("ns", "s")["version"] == v
    assert docs.lookup_sync("ns", "tag", "none") == []
    assert [k for k, _ in docs.scan_sync("ns", order="created")[0]] == ["b", "s"]
    assert docs.remove_sync("ns", "s", precondition="present")
    assert docs.remove_sync("ns", "b")


ADAPTER = Path(ta_persistence.__file__).with_name("adapter.py")


def load_like_the_seed(module_path: str, class_name: str):
    """What seed 004's factory does with TA_PERSISTENCE_MODULE / _CLASS."""
    spec = importlib.util.spec_from_file_location("custom_persistence", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, class_name)
    try:
        return module, cls(app_config=None)
    except TypeError:
        return module, cls()


def test_the_adapter_is_a_drop_in_for_the_seed_factory(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # the two lines a seed-004 deployment changes: they name Python code,
    # and the library does not take them for a plugin library
    monkeypatch.setenv("TA_PERSISTENCE_MODULE", str(ADAPTER))
    monkeypatch.setenv("TA_PERSISTENCE_CLASS", "TaPersistenceManager")
    module, manager = load_like_the_seed(os.environ["TA_PERSISTENCE_MODULE"], os.environ["TA_PERSISTENCE_CLASS"])
    assert manager._store.backend == env["TA_PERSISTENCE_BACKEND"]

    async def run():
        await manager.create(task("a-1", "ar-1"))
        assert (await manager.load("a-1"))["task_id"] == "a-1"
        assert (await manager.load_by_request_id("ar-1"))["task_id"] == "a-1"
        await manager.update(task("a-1", "ar-2"))
        assert (await manager.load_by_request_id("ar-2"))["task_id"] == "a-1"
        with pytest.raises(module.PersistenceCreateError) as e:
            await manager.create(task("a-1"))
        assert isinstance(e.value.__cause__, ta_persistence.AlreadyExistsError)
        assert "a-1" in e.value.message
        await manager.delete("a-1")
        with pytest.raises(module.PersistenceDeleteError):
            await manager.delete("a-1")
        with pytest.raises(module.PersistenceUpdateError):
            await manager.update(task("a-1"))
        assert await manager.load("a-1") is None

    asyncio.run(run())
