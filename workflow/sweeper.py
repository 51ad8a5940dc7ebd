"""The lease sweeper: work whose process died (killed, redeployed) turns interrupted.

A process renews the leases of the generations it works on (`leases.py`); a lease that ran
out means that process is gone (never one of this process's own: a busy event loop can be
late to renew). Every server process sweeps on a schedule, keeping every token the dead
process had persisted. The loop starts with the first request a process
serves (`medhastra.asgi`): Daphne sends no ASGI lifespan events.
"""

from django.conf import settings

from workflow import leases, periodic
from workflow.models import (
    INTERRUPTED,
    ChatMessage,
    Generation,
    StageRun,
    Status,
    WorkflowRun,
    lease_ran_out,
)


def ensure_running() -> None:
    """Start this process's sweep loop, once."""
    periodic.ensure(sweep, settings.LEASE_SECONDS / 3)


async def sweep() -> int:
    """End the generations whose lease ran out as interrupted, and the groups left with
    nothing to run; returns how many generations it ended."""
    count = 0
    for model in (StageRun, ChatMessage):
        async for generation in model.objects.expired().exclude(pk__in=leases.held(model)):
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
