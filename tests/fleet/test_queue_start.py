"""A proxy joining the fleet's queue, on a real PostgreSQL: the wait-mode holds of its earlier
run are abandoned (their requests died with it), and never a hold of this run, however early
it comes."""

from __future__ import annotations

import asyncio

import psycopg

from shield_addon.fleet import FleetError, db
from shield_addon.fleet.queue import Queue


async def nothing() -> None:
    return None


def publish(queue: Queue, hold_id: str) -> asyncio.Future:
    return asyncio.ensure_future(queue.publish(hold_id, "wait", None, "bot", "DELETE", "https://x/", "s", None,
                                               None, None))


async def start_and_publish_at_once(url: str) -> None:
    earlier = Queue(url, "chain-1", "p1", nothing)
    await earlier.connect()
    await publish(earlier, "of-the-earlier-run")
    await earlier.close()

    queue = Queue(url, "chain-1", "p1", nothing)
    queue.listen = "127.0.0.1:8080"
    task = asyncio.ensure_future(queue.run())
    try:
        # A hold opened the moment the proxy starts: published at the first chance the queue gives.
        for _ in range(100_000):
            try:
                await publish(queue, "of-this-run")
                break
            except FleetError:
                await asyncio.sleep(0)
        else:
            raise AssertionError("the queue never accepted a hold")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_joining_abandons_the_earlier_runs_holds_and_never_one_of_this_run(fleet_url: str) -> None:
    with db.connect(fleet_url) as con:
        db.migrate(con)
    asyncio.run(start_and_publish_at_once(fleet_url))
    with psycopg.connect(fleet_url) as con:
        rows = dict(con.execute("SELECT hold_id, decision FROM holds").fetchall())
    assert rows == {"of-the-earlier-run": "abandoned", "of-this-run": None}
