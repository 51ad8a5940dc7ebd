"""The broker over real channel layers: in-memory, and Redis where one is reachable."""

import asyncio
import os
import socket
import time
from dataclasses import dataclass

import pytest

from streaming.broker import HEARTBEAT, Delta, follow, publish_change, publish_delta

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


LAYERS = {
    "memory": {"BACKEND": "streaming.layers.LocalChannelLayer"},
    "redis": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}


@pytest.fixture(params=["memory", "redis"])
def layer(request, settings):
    if request.param == "redis" and "REDIS_URL" not in os.environ and not _redis_reachable():
        pytest.skip("no Redis here")
    settings.CHANNEL_LAYERS = {"default": LAYERS[request.param]}


@dataclass
class Truth:
    """What Postgres holds: read by the follower as its snapshot."""

    seq: int = 0
    finished: bool = False

    async def load(self) -> "Truth":
        return Truth(self.seq, self.finished)


def test_a_follower_gets_the_snapshot_then_each_delta_once(layer):
    async def scenario():
        truth = Truth(seq=2)
        follower = follow("run.1", truth.load, heartbeat=0.3)
        assert await anext(follower) == Truth(2)
        await publish_delta("run.1", 2, 1, {"reasoning": "already in the snapshot"})
        await publish_delta("run.1", 3, 1, {"reasoning": "a"})
        await publish_delta("run.1", 3, 1, {"reasoning": "a"})  # a duplicate
        assert await anext(follower) == Delta(3, 1, {"reasoning": "a"}, at=0)
        truth.seq, truth.finished = 4, True
        await publish_change("run.1", 4)
        assert [item async for item in follower] == [Truth(4, True)]

    asyncio.run(scenario())


def test_a_skipped_seq_brings_a_fresh_snapshot_from_the_truth(layer):
    async def scenario():
        truth = Truth()
        follower = follow("run.2", truth.load, heartbeat=5)
        await anext(follower)
        truth.seq = 5  # seqs 1-4 were persisted but their messages were lost
        await publish_delta("run.2", 5, 1, {"reasoning": "x"})
        assert await anext(follower) == Truth(5)
        await publish_delta("run.2", 6, 1, {"reasoning": "y"})
        assert (await anext(follower)).seq == 6
        await follower.aclose()

    asyncio.run(scenario())


def test_an_idle_follower_gets_heartbeats_and_a_finished_run_ends_at_once(layer):
    async def scenario():
        follower = follow("run.3", Truth(seq=1).load, heartbeat=0.1)
        await anext(follower)
        assert await anext(follower) is HEARTBEAT
        await follower.aclose()
        finished = Truth(seq=9, finished=True)
        assert [item async for item in follow("run.4", finished.load, heartbeat=0.1)] == [finished]

    asyncio.run(scenario())


def test_a_change_nobody_published_reaches_the_follower_after_a_heartbeat(layer):
    async def scenario():
        truth = Truth(seq=1)
        follower = follow("run.5", truth.load, heartbeat=0.1)
        await anext(follower)
        truth.seq, truth.finished = 2, True  # e.g. the publishing process lost its layer
        assert await anext(follower) is HEARTBEAT
        assert [item async for item in follower] == [Truth(2, True)]

    asyncio.run(scenario())


def test_an_idle_heartbeat_reads_the_state_and_a_snapshot_only_when_it_changed(layer):
    snapshots = 0

    async def scenario():
        truth = Truth(seq=1)

        async def load():
            nonlocal snapshots
            snapshots += 1
            return await truth.load()

        follower = follow("run.6", load, heartbeat=0.05, load_state=truth.load)
        await anext(follower)
        for _ in range(3):
            assert await anext(follower) is HEARTBEAT
        assert snapshots == 1, "nothing changed: no snapshot read"
        truth.seq, truth.finished = 2, True  # read after the heartbeat last yielded
        assert [item async for item in follower] == [Truth(2, True)]
        assert snapshots == 2

    asyncio.run(scenario())


def test_a_follower_that_fell_behind_sends_the_waiting_deltas_as_one(layer):
    async def scenario():
        truth = Truth(seq=1)
        follower = follow("run.7", truth.load, heartbeat=5)
        await anext(follower)
        for seq, text in ((2, "a"), (3, "b"), (4, "c")):
            await publish_delta("run.7", seq, 1, {"reasoning": text})
        await publish_delta("run.7", 5, 1, {"summary": "d"})
        await asyncio.sleep(0.05)  # all four arrive while the follower is busy elsewhere
        joined = await anext(follower)
        assert joined == Delta(5, 1, {"reasoning": "abc", "summary": "d"}, at=0)
        assert 0.05 <= time.time() - joined.at < 5  # when its first part was published
        await publish_delta("run.7", 6, 1, {"reasoning": "e"})
        assert await anext(follower) == Delta(6, 1, {"reasoning": "e"}, at=0)
        await follower.aclose()

    asyncio.run(scenario())
