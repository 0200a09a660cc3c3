"""The task store from Python, on memory, redb, sled and a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Optional

import pydantic
import pytest

import ta_persistence
from conftest import REPO, engine_env, task

FIXTURE = REPO / "tests" / "fixtures" / "agent_task_example.json"


def test_every_method_round_trips(store):
    async def run():
        t = task("t-1", "r-1", "r-2")
        await store.create(t)
        assert await store.load("t-1") == t
        assert await store.load("nope") is None
        assert (await store.load_by_request_id("r-2"))["task_id"] == "t-1"
        assert await store.load_by_request_id("r-none") is None
        moved = task("t-1", "r-1", "r-3", status="Completed")
        await store.update(moved)
        assert await store.load("t-1") == moved
        assert await store.load_by_request_id("r-2") is None
        assert (await store.load_by_request_id("r-3"))["status"] == "Completed"
        await store.delete("t-1")
        assert await store.load("t-1") is None
        assert await store.load_by_request_id("r-1") is None
        health = await store.health()
        assert health["status"] == "ok", health
        assert isinstance(store.stats(), dict)

    asyncio.run(run())
    assert store.fallback_cause is None


def test_the_fixture_round_trips_byte_for_byte(store):
    raw = FIXTURE.read_text().strip()
    fixture = json.loads(raw)
    store.sync.create(fixture)
    loaded = store.sync.load(fixture["task_id"])
    assert json.dumps(loaded, separators=(",", ":")) == raw
    store.sync.delete(fixture["task_id"])


def test_a_loaded_task_is_what_json_loads_makes_of_the_stored_text(store):
    # the loaded dict is built in Rust, not by json.loads: it must be the
    # same, value for value, type for type and key order for key order
    t = task("jt-1", "jr-1")
    t["items"][0]["pending_tool_calls"] = [
        {
            "id": "call-1",
            "args": {"n": 3, "big": 2**63 + 5, "neg": -7, "x": 1.0, "tiny": 2.5e-300, "ok": True, "none": None},
            "nested": [[1, "two", {"z": [], "a": {}}], "ünï©ødé ✓ \u2028", ""],
        }
    ]
    t["items"][0]["chat_history"] = {"zeta": 1, "alpha": [0.1, False], "mid": {"k": None}}

    async def run():
        await store.create(t)
        return await store.load("jt-1"), await store.load_by_request_id("jr-1")

    loaded, by_request = asyncio.run(run())
    stored = store.documents().get_sync("task", "jt-1")
    from_text = json.loads(stored["value"])
    for got in (loaded, by_request, store.sync.load("jt-1")):
        assert got == from_text == t
        assert json.dumps(got) == json.dumps(from_text)
        args = got["items"][0]["pending_tool_calls"][0]["args"]
        assert [type(v) for v in args.values()] == [int, int, int, float, float, bool, type(None)]
    store.sync.delete("jt-1")


def test_errors_are_typed_and_keep_their_detail(store):
    async def run():
        await store.create(task("dup", "r"))
        with pytest.raises(ta_persistence.AlreadyExistsError) as e:
            await store.create(task("dup", "r"))
        assert e.value.kind == "AlreadyExists"
        assert e.value.operation == "create"
        assert "dup" in e.value.detail
        with pytest.raises(ta_persistence.NotFoundError) as e:
            await store.update(task("missing", "r"))
        assert e.value.operation == "update"
        with pytest.raises(ta_persistence.NotFoundError):
            await store.delete("missing")
        with pytest.raises(ta_persistence.InvalidInputError):
            await store.create({"task_id": "x"})
        with pytest.raises(TypeError):
            await store.create(42)
        # every one is a PersistenceError
        assert issubclass(ta_persistence.CorruptedError, ta_persistence.PersistenceError)
        await store.delete("dup")

    asyncio.run(run())


def test_the_sync_mirror(store):
    s = store.sync
    s.create(task("s-1", "sr-1"))
    assert s.load("s-1")["task_id"] == "s-1"
    assert s.load_by_request_id("sr-1")["task_id"] == "s-1"
    s.update(task("s-1", "sr-2"))
    assert s.load_by_request_id("sr-2")["task_id"] == "s-1"
    with pytest.raises(ta_persistence.AlreadyExistsError):
        s.create(task("s-1"))
    s.delete("s-1")
    assert s.load("s-1") is None
    assert s.health()["status"] == "ok"


def test_a_pydantic_model_round_trips_without_the_binding_knowing_it(env):
    class Item(pydantic.BaseModel):
        task_id: str
        role: str
        item: dict
        request_id: str
        updated: str
        pending_tool_calls: Optional[list] = None
        chat_history: Optional[dict] = None

    class AgentTask(pydantic.BaseModel):
        task_id: str
        session_id: str
        user_id: str
        items: list[Item]
        created_at: str
        last_updated: str
        status: str

    store = ta_persistence.TaskStore.open(env=env, model=AgentTask)
    t = AgentTask.model_validate(task("m-1", "mr-1"))

    async def run():
        await store.create(t)
        loaded = await store.load("m-1")
        assert isinstance(loaded, AgentTask)
        assert loaded == t
        assert (await store.load_by_request_id("mr-1")) == t
        await store.delete("m-1")

    asyncio.run(run())


def test_many_concurrent_coroutines_never_block_the_loop(env):
    store = ta_persistence.TaskStore.open(env=env)

    async def run():
        stalls = []
        stop = asyncio.Event()

        async def heartbeat():
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                stalls.append(now - last - 0.005)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.02)

        async def one(n):
            await store.create(task(f"c-{n}", f"cr-{n}"))
            loaded = await store.load(f"c-{n}")
            assert loaded["task_id"] == f"c-{n}"
            assert (await store.load_by_request_id(f"cr-{n}"))["task_id"] == f"c-{n}"

        await asyncio.gather(*(one(n) for n in range(200)))
        stop.set()
        await beat
        await asyncio.gather(*(store.delete(f"c-{n}") for n in range(200)))
        return max(stalls)

    worst = asyncio.run(run())
    print(f"worst heartbeat stall on {store.backend}: {worst * 1000:.1f} ms")
    assert worst < 0.050, f"the loop stalled {worst * 1000:.1f} ms"


def ta_persist() -> str:
    path = os.environ.get("TA_PERSIST_BIN", str(REPO / "target" / "debug" / "ta-persist"))
    assert Path(path).exists(), f"{path} missing: build it (cargo build -p persistence-cli) or set TA_PERSIST_BIN"
    return path


def test_tasks_cross_between_python_and_the_rust_cli_on_one_redis(tmp_path, redis_port):
    env = engine_env("redis", tmp_path, redis_port, "interop")
    store = ta_persistence.TaskStore.open(env=env)
    store.sync.create(task("from-python", "ip-1"))
    cli_env = {**os.environ, **env}
    cli_env.pop("TA_PERSISTENCE_CONFIG", None)
    shown = subprocess.run(
        [ta_persist(), "--json", "tasks", "show", "from-python"],
        env=cli_env, capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "ip-1" in shown.stdout
    # the CLI's demo writes tasks and keeps them: Python reads them back
    demo = subprocess.run(
        [ta_persist(), "--json", "demo", "--tasks", "3", "--keep", "--no-streams"],
        env=cli_env, capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    listed = subprocess.run(
        [ta_persist(), "--json", "tasks", "list"],
        env=cli_env, capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    ids = [t["task_id"] for t in json.loads(listed.stdout) if t["task_id"].startswith("demo-")]
    assert len(ids) == 3, listed.stdout
    for task_id in ids:
        assert store.sync.load(task_id)["task_id"] == task_id
    deleted = subprocess.run(
        [ta_persist(), "tasks", "delete", "from-python"],
        env=cli_env, capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert deleted.returncode == 0, deleted.stderr
    assert store.sync.load("from-python") is None


def test_wrong_settings_are_a_config_error_never_a_fallback():
    with pytest.raises(ta_persistence.ConfigError) as e:
        ta_persistence.TaskStore.open(env={"TA_PERSISTENCE_BACKEND": "mongo"})
    assert "mongo" in str(e.value)
    with pytest.raises(ta_persistence.ConfigError):
        ta_persistence.TaskStore.open(env={"TA_REDIS_PORT": "0", "TA_PERSISTENCE_BACKEND": "redis"})


def test_an_unreachable_redis_falls_back_loudly_or_fails(redis_port):
    env = {"TA_PERSISTENCE_BACKEND": "redis", "TA_REDIS_HOST": "127.0.0.1", "TA_REDIS_PORT": "1"}
    store = ta_persistence.TaskStore.open(env={**env, "TA_PERSISTENCE_FALLBACK": "memory"})
    assert store.backend == "memory" and store.requested == "redis"
    assert store.fallback_cause
    with pytest.raises(ta_persistence.UnavailableError):
        ta_persistence.TaskStore.open(env={**env, "TA_PERSISTENCE_FALLBACK": "fail"})


def test_a_cancelled_call_leaves_the_store_working(store):
    async def run():
        # cancelled once the call is under way: it still runs to its end
        pending = asyncio.ensure_future(store.create(task("cancelled", "cx-1")))
        await asyncio.sleep(0)
        pending.cancel()
        try:
            await pending
        except asyncio.CancelledError:
            pass
        for _ in range(100):
            if await store.load("cancelled") is not None:
                break
            await asyncio.sleep(0.01)
        assert (await store.load("cancelled"))["task_id"] == "cancelled"
        await store.delete("cancelled")
        # and each new loop gets its answers too
        return await store.load("cancelled")

    assert asyncio.run(run()) is None
    assert asyncio.run(store.load("cancelled")) is None


def test_loops_come_and_go_without_piling_up(store):
    import gc
    import os
    import weakref

    loops = []
    # each loop watches a wake-up descriptor of its own: closed loops must
    # not leave theirs open
    open_fds = len(os.listdir("/proc/self/fd"))

    async def one(n):
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await store.create(task(f"l-{n}", f"lr-{n}"))
        assert (await store.load(f"l-{n}"))["task_id"] == f"l-{n}"
        await store.delete(f"l-{n}")

    for n in range(20):
        asyncio.run(one(n))
    gc.collect()
    alive = sum(1 for r in loops if r() is not None)
    # at most the newest loop is still held (until another loop calls)
    assert alive <= 1, f"{alive} closed loops still alive"
    leaked = len(os.listdir("/proc/self/fd")) - open_fds
    assert leaked <= 2, f"{leaked} descriptors more after 20 loops"


def test_a_loop_that_cannot_watch_descriptors_is_woken_all_the_same(store):
    class NoReaderLoop(asyncio.SelectorEventLoop):
        """As Windows' proactor loop: no add_reader."""

        def add_reader(self, *args):
            raise NotImplementedError

    async def run():
        tasks = [task(f"nr-{i}", f"nrr-{i}") for i in range(50)]
        await asyncio.gather(*(store.create(t) for t in tasks))
        loaded = await asyncio.gather(*(store.load(t["task_id"]) for t in tasks))
        assert [t["task_id"] for t in loaded] == [t["task_id"] for t in tasks]
        await asyncio.gather(*(store.delete(t["task_id"]) for t in tasks))
        return await store.load("nr-0")

    loop = NoReaderLoop()
    try:
        assert loop.run_until_complete(asyncio.wait_for(run(), 30)) is None
    finally:
        loop.close()


MANY_THREADS = """
import asyncio, sys, threading
import ta_persistence

store = ta_persistence.TaskStore.open(env={"TA_PERSISTENCE_BACKEND": "memory"})
errors = []


def task(task_id):
    return {
        "task_id": task_id, "session_id": "s", "user_id": "u", "items": [],
        "created_at": "2025-11-03T14:07:21.512345",
        "last_updated": "2025-11-03T14:07:21.512345", "status": "Running",
    }


def worker(w):
    try:
        for n in range(10):
            async def one():
                ids = [f"th-{w}-{n}-{i}" for i in range(4)]
                await asyncio.gather(*(store.create(task(i)) for i in ids))
                loaded = await asyncio.gather(*(store.load(i) for i in ids))
                assert [t["task_id"] for t in loaded] == ids
                await asyncio.gather(*(store.delete(i) for i in ids))
            asyncio.run(one())
    except BaseException as e:
        errors.append((w, repr(e)))


sys.setswitchinterval(1e-5)
threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors:", errors)
sys.exit(1 if errors else 0)
"""


def test_loops_on_many_threads_at_once():
    # One loop per thread, each thread making new loops while the others
    # call: the loops' queues are found, made and let go concurrently. The
    # GIL is handed over every 10 µs instead of 5 ms, so switches land
    # inside the stretches of Python the binding runs. A queue once looked
    # up closed loops with a lock held, and with this the threads
    # deadlocked within seconds (one holding the lock and waiting for the
    # GIL, one holding the GIL and waiting for the lock), which freezes the
    # whole interpreter: hence a child process, with a deadline.
    import sys

    try:
        run = subprocess.run(
            [sys.executable, "-c", MANY_THREADS], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("4 threads with a loop each did not finish within 60 s: a deadlock")
    assert run.returncode == 0, run.stdout + run.stderr
