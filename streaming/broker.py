"""Fan-out of a run's events over the channel layer, with Postgres as the truth.

A follower subscribes first, then reads the snapshot, then forwards the live deltas whose
`seq` follows it: no gap and no duplicate. Any other change (a status, a new run in a
group), and any skipped seq (channel layers deliver at most once), makes the follower
read a fresh snapshot instead, so what it sends is always what Postgres holds.
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
class State:
    """A followed object's seq and whether it is over, without its fragments."""

    seq: int
    finished: bool


@dataclass(frozen=True)
class Delta:
    """Text appended by the run: forwarded as it is, since it follows what was sent."""

    seq: int
    id: Any
    texts: dict[str, str]


HEARTBEAT = object()


async def publish_delta(group: str, seq: int, id: Any, texts: dict[str, str]) -> None:
    """Appended text, persisted with this `seq`."""
    await _send(group, {"seq": seq, "id": id, "texts": texts})


async def publish_change(group: str, seq: int) -> None:
    """Any other change, persisted with this `seq`: followers re-read the snapshot."""
    await _send(group, {"seq": seq})


async def _send(group: str, message: dict[str, Any]) -> None:
    await get_channel_layer().group_send(group, {"type": "run.event", **message})


async def follow[S: Snapshot](
    group: str,
    load_snapshot: Callable[[], Awaitable[S]],
    *,
    heartbeat: float,
    load_state: Callable[[], Awaitable[Snapshot]] | None = None,
) -> AsyncIterator[S | Delta | object]:
    """Yield snapshots and deltas in seq order until a snapshot is finished; HEARTBEAT when
    idle, after which Postgres is read again: its state (`load_state`, cheaper), and a
    snapshot only if that changed."""
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
                # A change that was never published (or whose event was lost) shows here.
                state = await (load_state or load_snapshot)()
                if state.seq > seq or state.finished:
                    snapshot = await load_snapshot()
                    seq = snapshot.seq
                    yield snapshot
                continue
            message, receiving = receiving.result(), None
            if message["seq"] <= seq:
                continue
            if message["seq"] == seq + 1 and "texts" in message:
                seq = message["seq"]
                yield Delta(seq, message["id"], message["texts"])
                continue
            snapshot = await load_snapshot()
            seq = snapshot.seq
            yield snapshot
    finally:
        if receiving is not None:
            receiving.cancel()
        await layer.group_discard(group, channel)


async def signal(group: str) -> None:
    """A one-off signal (a stop request) to whoever listens on `group`."""
    await _send(group, {})


async def signals(group: str, *, tick: float) -> AsyncIterator[bool]:
    """True for each signal on `group`, False every `tick` seconds without one."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    receiving: asyncio.Task | None = None
    try:
        while True:
            receiving = receiving or asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receiving}, timeout=tick)
            if done:
                receiving = None
            yield bool(done)
    finally:
        if receiving is not None:
            receiving.cancel()
        await layer.group_discard(group, channel)
