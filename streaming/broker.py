"""Fan-out of a run's events over the channel layer, with Postgres as the truth.

A follower subscribes first, then reads the snapshot, then forwards the live deltas whose
`seq` follows it: no gap and no duplicate. Any other change (a status, a new run in a
group), and any skipped seq (channel layers deliver at most once), makes the follower
read a fresh snapshot instead, so what it sends is always what Postgres holds. A
follower that fell behind joins the deltas waiting for it into one.
"""

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
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
    """Text appended by the run: forwarded as it is, since it follows what was sent.
    `at`: when the first of its text was published (wall clock, as processes agree)."""

    seq: int
    id: Any
    texts: dict[str, str]
    at: float = field(compare=False)


HEARTBEAT = object()


async def publish_delta(group: str, seq: int, id: Any, texts: dict[str, str]) -> None:
    """Appended text, persisted with this `seq`."""
    await _send(group, {"seq": seq, "id": id, "texts": texts, "at": time.time()})


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
    arrived: deque[dict[str, Any]] = deque()
    seq, finished = 0, False

    async def fresh() -> S:
        """A snapshot, yielded and then let go: a follower waits for minutes, and keeping
        the fragments it sent (about 10 KB) would be most of what an open stream holds."""
        nonlocal seq, finished
        snapshot = await load_snapshot()
        seq, finished = snapshot.seq, snapshot.finished
        return snapshot

    try:
        yield await fresh()
        while not finished:
            if not arrived:
                receiving = receiving or asyncio.ensure_future(layer.receive(channel))
                done, _ = await asyncio.wait({receiving}, timeout=heartbeat)
                if not done:
                    yield HEARTBEAT
                    # A change never published (or whose event was lost) shows here.
                    state = await (load_state or load_snapshot)()
                    if state.seq > seq or state.finished:
                        yield await fresh()
                    continue
                arrived.append(receiving.result())
                receiving = await _take_waiting(layer, channel, arrived)
            message = arrived.popleft()
            if message["seq"] <= seq:
                continue
            if _follows(message, seq):
                delta = _joined(message, arrived)
                seq = delta.seq
                yield delta
                continue
            yield await fresh()
    finally:
        if receiving is not None:
            receiving.cancel()
        await layer.group_discard(group, channel)


async def _take_waiting(layer, channel: str, arrived: deque) -> asyncio.Task:
    """Add the messages already waiting on the channel to `arrived`, without waiting for
    more; returns the receive that waits for the next one."""
    while True:
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)  # one turn of the loop: a waiting message is received now
        if not receiving.done():
            return receiving
        arrived.append(receiving.result())


def _follows(message: dict[str, Any], seq: int) -> bool:
    return message["seq"] == seq + 1 and "texts" in message


def _joined(first: dict[str, Any], arrived: deque) -> Delta:
    """A follower that fell behind sends the deltas waiting for it as one event: under
    load, events carry more text rather than arrive later."""
    seq, texts = first["seq"], dict(first["texts"])
    while arrived and _follows(arrived[0], seq) and arrived[0]["id"] == first["id"]:
        message = arrived.popleft()
        seq = message["seq"]
        for channel, text in message["texts"].items():
            texts[channel] = texts.get(channel, "") + text
    return Delta(seq, first["id"], texts, first["at"])


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
