"""The binding against redis-py doing seed 004's own Redis command sequence.

Starts a redis-server on a free loopback port, then for each operation
(create, load, update, load_by_request_id, delete) runs N tasks with 32
coroutines at a time through the binding (TaskStore on Redis) and through
redis-py's asyncio client doing what the seed's Redis manager does
(`exists`, `set` with TTL, `sadd` and `expire` per request id, `get`,
`smembers`), rounds interleaved, and prints the median ops/s of each side
and their ratio. A third column runs the binding on memory (no I/O at
all): the most any call can do from Python on this machine, which bounds
the ratio a read can reach.

    pip install redis
    python bindings/python/bench.py [--tasks 20000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import redis.asyncio as aioredis

import ta_persistence

TTL = 3600
CONCURRENCY = 32
OPS = ["create", "load", "update", "load_by_request_id", "delete"]


def task(task_id: str, rid: str, status: str = "Running") -> dict:
    return {
        "task_id": task_id,
        "session_id": "s-1",
        "user_id": "u-1",
        "items": [
            {
                "task_id": task_id,
                "role": "user",
                "item": {"content_type": "text", "content": "What did I pay for order ORD-48213?"},
                "request_id": rid,
                "updated": "2025-11-03T14:07:21.512345",
                "pending_tool_calls": None,
                "chat_history": None,
            }
        ],
        "created_at": "2025-11-03T14:07:21.512345",
        "last_updated": "2025-11-03T14:07:21.512345",
        "status": status,
    }


class SeedRedisManager:
    """Seed 004's Redis manager, as its document describes it."""

    def __init__(self, client: aioredis.Redis, prefix: str):
        self.r = client
        self.prefix = prefix

    def _task(self, task_id):
        return f"{self.prefix}:task:{task_id}"

    def _index(self, rid):
        return f"{self.prefix}:request_index:{rid}"

    async def _write(self, t: dict):
        await self.r.set(self._task(t["task_id"]), json.dumps(t), ex=TTL)
        for rid in {i["request_id"] for i in t["items"]}:
            await self.r.sadd(self._index(rid), t["task_id"])
            await self.r.expire(self._index(rid), TTL)

    async def create(self, t):
        if await self.r.exists(self._task(t["task_id"])):
            raise RuntimeError("exists")
        await self._write(t)

    async def load(self, task_id):
        raw = await self.r.get(self._task(task_id))
        return None if raw is None else json.loads(raw)

    async def update(self, t):
        if not await self.r.exists(self._task(t["task_id"])):
            raise RuntimeError("missing")
        await self._write(t)

    async def load_by_request_id(self, rid):
        members = await self.r.smembers(self._index(rid))
        for task_id in members:
            found = await self.load(task_id.decode())
            if found is not None:
                return found
        return None

    async def delete(self, task_id):
        if not await self.r.exists(self._task(task_id)):
            raise RuntimeError("missing")
        raw = await self.r.get(self._task(task_id))
        await self.r.delete(self._task(task_id))
        for rid in {i["request_id"] for i in json.loads(raw)["items"]}:
            await self.r.srem(self._index(rid), task_id)


async def run_op(store, op: str, tasks: list[dict]) -> float:
    """ops/s of `op` over `tasks`, CONCURRENCY at a time."""
    queue = list(tasks)

    async def worker():
        while queue:
            t = queue.pop()
            if op == "create":
                await store.create(t)
            elif op == "load":
                assert await store.load(t["task_id"]) is not None
            elif op == "update":
                t = dict(t, status="Completed")
                await store.update(t)
            elif op == "load_by_request_id":
                assert await store.load_by_request_id(t["items"][0]["request_id"]) is not None
            else:
                await store.delete(t["task_id"])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(tasks) / (time.perf_counter() - started)


async def one_round(store, n: int, tag: str) -> dict:
    tasks = [task(f"{tag}-{i}", f"{tag}-r-{i}") for i in range(n)]
    return {op: await run_op(store, op, tasks) for op in OPS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(args):
    server = shutil.which("redis-server")
    assert server, "redis-server is needed"
    port = free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        binding = ta_persistence.TaskStore.open(
            env={
                "TA_PERSISTENCE_BACKEND": "redis",
                "TA_REDIS_HOST": "127.0.0.1",
                "TA_REDIS_PORT": str(port),
                "TA_PERSISTENCE_FALLBACK": "fail",
            }
        )
        memory = ta_persistence.TaskStore.open(env={"TA_PERSISTENCE_BACKEND": "memory"})
        client = aioredis.Redis(host="127.0.0.1", port=port, max_connections=CONCURRENCY)
        seed = SeedRedisManager(client, "seedbench")
        results = {side: {op: [] for op in OPS} for side in ("binding", "redis-py", "memory")}
        for r in range(args.rounds):
            # interleaved: which side goes first alternates
            sides = [("binding", binding), ("redis-py", seed), ("memory", memory)]
            if r % 2:
                sides.reverse()
            for name, store in sides:
                got = await one_round(store, args.tasks, f"{name}-{r}")
                for op, rate in got.items():
                    results[name][op].append(rate)
        await client.aclose()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for op in OPS:
        b = statistics.median(results["binding"][op])
        p = statistics.median(results["redis-py"][op])
        m = statistics.median(results["memory"][op])
        rows.append(
            {
                "operation": op,
                "binding_ops_per_sec": b,
                "redis_py_ops_per_sec": p,
                "ratio": b / p,
                "binding_on_memory_ops_per_sec": m,
                "ceiling_ratio": m / p,
            }
        )
    if args.json:
        print(json.dumps({"tasks": args.tasks, "rounds": args.rounds, "concurrency": CONCURRENCY, "rows": rows}, indent=2))
        return
    print(
        f"binding vs redis-py (seed 004's command sequence), {args.tasks} tasks, "
        f"{CONCURRENCY} coroutines, median of {args.rounds} interleaved rounds"
    )
    print(f"{'operation':<20}{'binding ops/s':>15}{'redis-py ops/s':>16}{'ratio':>8}{'on memory':>12}{'ceiling':>9}")
    for row in rows:
        print(
            f"{row['operation']:<20}{row['binding_ops_per_sec']:>15,.0f}"
            f"{row['redis_py_ops_per_sec']:>16,.0f}{row['ratio']:>8.2f}"
            f"{row['binding_on_memory_ops_per_sec']:>12,.0f}{row['ceiling_ratio']:>9.2f}"
        )
    print("ceiling: the binding on memory (no I/O) over redis-py on Redis, the most a ratio can be here")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20000, help="tasks per operation and round (phases of a second or more: shorter ones are at the mercy of the noise)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    asyncio.run(main(parser.parse_args()))
