import asyncio

import ta_persistence

# the settings choose the engine: TA_PERSISTENCE_BACKEND, TA_REDIS_HOST, ...
store = ta_persistence.TaskStore.open(env={"TA_PERSISTENCE_BACKEND": "memory"})
print("running on", store.backend, "- fell back:", store.fallback_cause)

task = {
    "task_id": "t-1", "session_id": "s-1", "user_id": "u-1", "status": "Running",
    "created_at": "2025-11-03T14:07:21.512345", "last_updated": "2025-11-03T14:07:21.512345",
    "items": [{
        "task_id": "t-1", "role": "user", "request_id": "r-1",
        "item": {"content_type": "text", "content": "Refund order ORD-48213"},
        "updated": "2025-11-03T14:07:21.512345", "pending_tool_calls": None, "chat_history": None,
    }],
}


async def main():
    await store.create(task)
    found = await store.load_by_request_id("r-1")
    assert found == task
    try:
        await store.create(task)
    except ta_persistence.AlreadyExistsError as e:
        print("refused:", e.detail)
    await store.delete("t-1")


asyncio.run(main())
