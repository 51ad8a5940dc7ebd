"""The broker over real channel layers: in-memory, and Redis where one is reachable."""

import asyncio
import os
import socket
from dataclasses import dataclass

import pytest

from streaming.broker import HEARTBEAT, Live, follow, publish

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


LAYERS = {
    "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
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
class Snapshot:
    seq: int
    finished: bool = False


def test_a_follower_gets_the_snapshot_then_each_live_message_once(layer):
    async def scenario():
        truth = Snapshot(seq=2)

        async def load():
            return Snapshot(truth.seq, truth.finished)

        follower = follow("run.1", load, heartbeat=0.3)
        assert await anext(follower) == Snapshot(2)
        await publish("run.1", {"seq": 2, "texts": {"reasoning": "old"}})  # already in it
        await publish("run.1", {"seq": 3, "texts": {"reasoning": "a"}})
        await publish("run.1", {"seq": 3, "texts": {"reasoning": "a"}})  # a duplicate
        await publish("run.1", {"seq": 4, "status": "complete", "final": True})
        got = [item async for item in follower]
        assert [(i.seq, i.final) for i in got] == [(3, False), (4, True)]
        assert all(isinstance(i, Live) for i in got)

    asyncio.run(scenario())


def test_a_skipped_seq_brings_a_fresh_snapshot_from_the_truth(layer):
    async def scenario():
        truth = Snapshot(seq=0)

        async def load():
            return Snapshot(truth.seq, truth.finished)

        follower = follow("run.2", load, heartbeat=5)
        await anext(follower)
        truth.seq = 5  # seqs 1-4 were persisted but their messages were lost
        await publish("run.2", {"seq": 5, "texts": {"reasoning": "x"}})
        assert await anext(follower) == Snapshot(5)
        await publish("run.2", {"seq": 6, "final": True})
        assert (await anext(follower)).seq == 6
        await follower.aclose()

    asyncio.run(scenario())


def test_an_idle_follower_gets_heartbeats_and_a_finished_run_ends_at_once(layer):
    async def scenario():
        async def running():
            return Snapshot(seq=1)

        follower = follow("run.3", running, heartbeat=0.1)
        await anext(follower)
        assert await anext(follower) is HEARTBEAT
        await follower.aclose()

        async def finished():
            return Snapshot(seq=9, finished=True)

        assert [item async for item in follow("run.4", finished, heartbeat=0.1)] == [
            Snapshot(9, True)
        ]

    asyncio.run(scenario())
