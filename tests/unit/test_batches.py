"""Batches: reading never waits for a save; every piece is saved once, in order, and the
streams of a process share each save."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.batches import Batches

CHANNELS = ("reasoning", "summary")
KEYS = ("run 1", "run 2", "reply 1")
reads = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.lists(st.tuples(st.sampled_from(CHANNELS), st.text(min_size=1, max_size=5)), max_size=3),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(reads, st.sampled_from([0.0, 0.0005, 0.002]))
def test_every_piece_is_saved_once_in_order_one_save_at_a_time(read, save_seconds):
    saved: list[dict[str, dict[str, str]]] = []
    in_flight = most_in_flight = 0

    async def save(batch):
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(save_seconds)
        saved.append(batch)
        in_flight -= 1
        return {}

    async def scenario():
        batches = Batches(save, interval=0.001)
        for key, pieces in read:
            batches.add(key, pieces)
            await asyncio.sleep(0)  # the provider's next chunk
        for key in KEYS:
            await batches.close(key)

    asyncio.run(scenario())

    for key in KEYS:
        for channel in CHANNELS:
            sent = "".join(t for k, pieces in read if k == key for c, t in pieces if c == channel)
            assert "".join(b.get(key, {}).get(channel, "") for b in saved) == sent
    assert most_in_flight <= 1
    assert all(texts for batch in saved for texts in batch.values()), "no empty save"


def test_a_slow_save_makes_the_next_batch_take_all_that_arrived_meanwhile():
    saved: list[str] = []

    async def slow_save(batch):
        saved.append(batch["run"]["reasoning"])
        await asyncio.sleep(0.05)
        return {}

    async def scenario():
        batches = Batches(slow_save, interval=0)
        for n in range(20):
            batches.add("run", [("reasoning", f"{n} ")])
            await asyncio.sleep(0.005)
        await batches.close("run")

    asyncio.run(scenario())

    assert "".join(saved) == "".join(f"{n} " for n in range(20))
    assert saved[0] == "0 ", "the first piece goes out at once"
    assert len(saved) <= 5, saved


def test_many_streams_share_each_save():
    saves: list[int] = []

    async def save(batch):
        saves.append(len(batch))
        await asyncio.sleep(0.01)
        return {}

    async def stream(batches, key):
        for n in range(10):
            batches.add(key, [("reasoning", f"{n} ")])
            await asyncio.sleep(0.005)
        await batches.close(key)

    async def scenario():
        batches = Batches(save, interval=0.01)
        await asyncio.gather(*(stream(batches, key) for key in range(50)))

    asyncio.run(scenario())

    assert max(saves) == 50, "a save carries every stream"
    assert len(saves) <= 10, "500 pieces from 50 streams take a handful of saves"


def test_a_failed_save_reaches_the_reader_of_that_stream_only():
    async def save(batch):
        return {key: RuntimeError("the generation ended elsewhere") for key in batch if key == 1}

    async def scenario():
        batches = Batches(save, interval=0)
        batches.add(1, [("reasoning", "a")])
        batches.add(2, [("reasoning", "a")])
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError):
            batches.add(1, [("reasoning", "b")])
        batches.add(2, [("reasoning", "b")])
        with pytest.raises(RuntimeError):
            await batches.close(1)
        await batches.close(2)

    asyncio.run(scenario())


def test_a_save_that_raises_fails_every_stream_it_carried():
    async def save(batch):
        raise ConnectionError("the database went away")

    async def scenario():
        batches = Batches(save, interval=0)
        batches.add(1, [("reasoning", "a")])
        batches.add(2, [("reasoning", "a")])
        for key in (1, 2):
            with pytest.raises(ConnectionError):
                await batches.close(key)

    asyncio.run(scenario())


def test_a_stream_that_ends_is_saved_and_closed_while_others_go_on():
    saved: list[str] = []

    async def save(batch):
        saved.extend(batch.get("ends", {}).values())
        await asyncio.sleep(0.002)
        return {}

    async def goes_on(batches, key):
        while True:
            batches.add(key, [("reasoning", "more ")])
            await asyncio.sleep(0.001)

    async def scenario():
        batches = Batches(save, interval=0.001)
        others = [asyncio.ensure_future(goes_on(batches, key)) for key in range(3)]
        batches.add("ends", [("reasoning", "the last words")])
        await asyncio.wait_for(batches.close("ends"), timeout=1)
        for other in others:
            other.cancel()

    asyncio.run(scenario())
    assert saved == ["the last words"]


def test_a_close_cancelled_meanwhile_still_saves_what_was_added():
    saved: list[str] = []

    async def slow_save(batch):
        await asyncio.sleep(0.02)
        saved.append(batch["run"]["reasoning"])
        return {}

    async def scenario():
        batches = Batches(slow_save, interval=0)
        batches.add("run", [("reasoning", "a")])
        await asyncio.sleep(0.005)  # "a" is being saved
        batches.add("run", [("reasoning", "b")])
        closing = asyncio.ensure_future(batches.close("run"))
        await asyncio.sleep(0.005)
        closing.cancel()  # a Stop
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert batches._failures == {}

    asyncio.run(scenario())
    assert saved == ["a", "b"]
