"""Fixtures: a real redis-server on a free loopback port (started here,
stopped at the end; a missing redis-server fails loudly), and a store on
each engine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import ta_persistence

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_port():
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (scripts/test.sh installs it)"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ta-py-redis-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            assert proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not listen within 10 s"
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def engine_env(engine: str, tmp: Path, redis_port: int, prefix: str) -> dict:
    env = {"TA_PERSISTENCE_BACKEND": engine, "TA_PERSISTENCE_FALLBACK": "fail"}
    if engine == "redb":
        env["TA_REDB_PATH"] = str(tmp / "tasks.redb")
    elif engine == "sled":
        env["TA_SLED_PATH"] = str(tmp / "sled")
    elif engine == "redis":
        env.update(
            {
                "TA_REDIS_HOST": "127.0.0.1",
                "TA_REDIS_PORT": str(redis_port),
                "TA_PERSISTENCE__REDIS__PREFIX": prefix,
            }
        )
    return env


@pytest.fixture(params=["memory", "redb", "sled", "redis"])
def env(request, tmp_path, redis_port):
    return engine_env(request.param, tmp_path, redis_port, f"py{os.getpid()}{request.node.name}")


@pytest.fixture
def store(env):
    return ta_persistence.TaskStore.open(env=env)


def task(task_id: str, *request_ids: str, status: str = "Running") -> dict:
    """A task of the seed's shape (the fixture's fields)."""
    return {
        "task_id": task_id,
        "session_id": "s-1",
        "user_id": "u-1",
        "items": [
            {
                "task_id": task_id,
                "role": "user",
                "item": {"content_type": "text", "content": f"hello {rid}"},
                "request_id": rid,
                "updated": "2025-01-01T00:00:00.000001",
                "pending_tool_calls": None,
                "chat_history": None,
            }
            for rid in request_ids
        ],
        "created_at": "2025-01-01T00:00:00.000001",
        "last_updated": "2025-01-01T00:00:00.000001",
        "status": status,
    }
