"""Telling followers what a generation persisted: on its own stream and, in a group, on
the group's.

Best effort: a follower that misses an event reads Postgres at its next heartbeat.
"""

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from streaming import broker

if TYPE_CHECKING:
    from workflow.models import Generation

logger = logging.getLogger(__name__)


async def change(generation: "Generation") -> None:
    """A change other than appended text: followers read the new state from Postgres."""
    async with _logged("Announcing a change failed."):
        await broker.publish_change(generation.stream_group, generation.seq)
        if group := await generation.group_stream():
            name, generation.group_seq = group
            await broker.publish_change(name, generation.group_seq)


async def text(generation: "Generation", texts: dict[str, str]) -> None:
    """Appended text, which followers add to what they show."""
    async with _logged("Announcing text failed."):
        await broker.publish_delta(generation.stream_group, generation.seq, generation.pk, texts)
        group = await generation.group_stream()
        if group is None:
            return
        name, seq = group
        before, generation.group_seq = generation.group_seq, seq
        # Other requests change a group's runs too (an edit makes them stale): text whose
        # seq also counts such a change would show twice on a page that read it meanwhile.
        if before is not None and seq == before + 1:
            await broker.publish_delta(name, seq, generation.pk, texts)
        else:
            await broker.publish_change(name, seq)


async def group_change(name: str, seq: int | None) -> None:
    """A change to a group itself (it ended)."""
    if seq is None:  # deleted with its case
        return
    async with _logged("Announcing a change failed."):
        await broker.publish_change(name, seq)


@asynccontextmanager
async def _logged(failure: str):
    try:
        yield
    except Exception:
        logger.warning(failure, exc_info=True)
