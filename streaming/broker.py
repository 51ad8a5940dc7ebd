"""Fan-out of a run's events over the channel layer, with Postgres as the truth.

A follower subscribes first, then reads the snapshot, then forwards live messages whose
`seq` is above it: no gap and no duplicate. Channel layers deliver at most once, so a
skipped seq means a message was dropped and the follower reads a fresh snapshot.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import get_channel_layer


class Snapshot(Protocol):
    seq: int
    finished: bool


@dataclass(frozen=True)
class Live:
    """A message published by the run: its `seq`, `final` and payload."""

    message: dict[str, Any]

    @property
    def seq(self) -> int:
        return self.message["seq"]

    @property
    def final(self) -> bool:
        return bool(self.message.get("final"))


HEARTBEAT = object()


async def publish(group: str, message: dict[str, Any]) -> None:
    """Send a message (with an increasing `seq`) to everyone following `group`."""
    await get_channel_layer().group_send(group, {"type": "run.event", **message})


async def follow[S: Snapshot](
    group: str, load_snapshot: Callable[[], Awaitable[S]], *, heartbeat: float
) -> AsyncIterator[S | Live | object]:
    """Yield the snapshot, then live messages in seq order, HEARTBEAT when idle."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    # One long-lived receive: cancelling a receive can drop what it buffered.
    receiving: asyncio.Task | None = None
    try:
        snapshot = await load_snapshot()
        yield snapshot
        seq = snapshot.seq
        while not snapshot.finished:
            receiving = receiving or asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receiving}, timeout=heartbeat)
            if not done:
                yield HEARTBEAT
                continue
            live, receiving = Live(receiving.result()), None
            if live.seq <= seq:
                continue
            if live.seq == seq + 1:
                seq = live.seq
                yield live
                if live.final:
                    return
                continue
            snapshot = await load_snapshot()
            seq = snapshot.seq
            yield snapshot
    finally:
        if receiving is not None:
            receiving.cancel()
        await layer.group_discard(group, channel)
