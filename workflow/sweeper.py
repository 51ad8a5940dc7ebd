"""The lease sweeper: work whose process died (killed, redeployed) turns interrupted.

A process renews the leases of the generations it works on (`runner`); a lease that ran
out means that process is gone. Every server process sweeps on a schedule, keeping every
token the dead process had persisted. The loop starts with the first request a process
serves (`medhastra.asgi`): Daphne sends no ASGI lifespan events.
"""

import asyncio
import logging

from django.conf import settings

from workflow.models import (
    INTERRUPTED,
    ChatMessage,
    Generation,
    StageRun,
    Status,
    WorkflowRun,
    lease_ran_out,
)

logger = logging.getLogger(__name__)

_loops: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def ensure_running() -> None:
    """Start this process's sweep loop, once."""
    loop = asyncio.get_running_loop()
    if loop not in _loops:
        _loops[loop] = loop.create_task(_sweep_forever())


async def _sweep_forever() -> None:
    while True:
        try:
            await sweep()
        except Exception:
            logger.warning("Sweeping expired leases failed; trying again.", exc_info=True)
        await asyncio.sleep(settings.LEASE_SECONDS / 3)


async def sweep() -> int:
    """End the generations whose lease ran out as interrupted, and the groups left with
    nothing to run; returns how many generations it ended."""
    count = 0
    for model in (StageRun, ChatMessage):
        async for generation in model.objects.expired():
            count += await interrupt(generation)
    async for workflow in WorkflowRun.objects.abandoned():
        await workflow.end()
    return count


async def interrupt(generation: Generation) -> bool:
    """End it as interrupted if its lease is still out: its process may have renewed it
    since the sweep read it (it was only slow)."""
    return await generation.end(
        Status.INTERRUPTED, code="interrupted", message=INTERRUPTED, only_if=lease_ran_out()
    )
