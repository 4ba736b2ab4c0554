"""Helpers shared by the benchmark scripts (imported as a sibling module: run the scripts from any directory)."""

from __future__ import annotations

import redis.asyncio as aioredis


async def delete_keys(r: aioredis.Redis, prefix: str) -> int:
    """Unlink every key starting with ``prefix`` (a benchmark queue's keys); returns how many."""
    deleted = 0
    async with r.pipeline(transaction=False) as pipe:
        async for key in r.scan_iter(match=f"{prefix}*", count=1000):
            pipe.unlink(key)
            deleted += 1
            if len(pipe) >= 1000:
                await pipe.execute()
        await pipe.execute()
    return deleted
