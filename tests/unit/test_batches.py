"""Batches: reading never waits for a save; every piece is saved once, in order."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.batches import Batches

CHANNELS = ("reasoning", "summary")
reads = st.lists(
    st.lists(st.tuples(st.sampled_from(CHANNELS), st.text(min_size=1, max_size=5)), max_size=3),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(reads, st.sampled_from([0.0, 0.0005, 0.002]))
def test_every_piece_is_saved_once_in_order_one_save_at_a_time(read, save_seconds):
    saved: list[dict[str, str]] = []
    in_flight = most_in_flight = 0

    async def save(texts):
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(save_seconds)
        saved.append(texts)
        in_flight -= 1

    async def scenario():
        batches = Batches(save, interval=0.001)
        for pieces in read:
            batches.add(pieces)
            await asyncio.sleep(0)  # the provider's next chunk
        await batches.close()

    asyncio.run(scenario())

    for channel in CHANNELS:
        sent = "".join(text for pieces in read for c, text in pieces if c == channel)
        assert "".join(texts.get(channel, "") for texts in saved) == sent
    assert most_in_flight <= 1
    assert all(saved), "no empty save"


def test_a_slow_save_makes_the_next_batch_take_all_that_arrived_meanwhile():
    saved: list[str] = []

    async def slow_save(texts):
        saved.append(texts["reasoning"])
        await asyncio.sleep(0.05)

    async def scenario():
        batches = Batches(slow_save, interval=0)
        for n in range(20):
            batches.add([("reasoning", f"{n} ")])
            await asyncio.sleep(0.005)
        await batches.close()

    asyncio.run(scenario())

    assert "".join(saved) == "".join(f"{n} " for n in range(20))
    assert saved[0] == "0 ", "the first piece goes out at once"
    assert len(saved) <= 5, saved


def test_a_failed_save_reaches_the_reader():
    async def failing_save(texts):
        raise RuntimeError("the generation ended elsewhere")

    async def scenario():
        batches = Batches(failing_save, interval=0)
        batches.add([("reasoning", "a")])
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError):
            batches.add([("reasoning", "b")])
        with pytest.raises(RuntimeError):
            await batches.close()

    asyncio.run(scenario())
