"""Who is still generating: leases the running process renews, and stop requests.

A generation's process renews its lease while it works; a lease that runs out means the
process died (killed, redeployed), and whoever looks next marks the work interrupted,
keeping every token it had persisted.
"""

import logging

from asgiref.sync import async_to_sync
from django.db.models import F, QuerySet
from django.utils import timezone

from streaming import broker
from workflow.models import (
    ACTIVE,
    ChatMessage,
    Generation,
    StageRun,
    Status,
    WorkflowRun,
    new_lease,
)

logger = logging.getLogger(__name__)

INTERRUPTED = "The server generating this stopped before it finished (a restart or a crash)."


def interrupt_abandoned(case_id: int | None = None) -> int:
    """Mark interrupted the generations whose lease ran out, and end the groups that have
    nothing left to run; returns how many generations were interrupted."""
    count = 0
    for model in (StageRun, ChatMessage):
        expired = model.objects.filter(lease_expires_at__lt=timezone.now())
        if case_id is not None:
            expired = expired.filter(case_id=case_id)
        count += end(expired, Status.INTERRUPTED, "interrupted", INTERRUPTED)
    unfinished = WorkflowRun.objects.filter(finished_at=None).exclude(stage_runs__status__in=ACTIVE)
    if case_id is not None:
        unfinished = unfinished.filter(case_id=case_id)
    for workflow in unfinished:  # their process died between their last stage and their end
        end_group(workflow)
    return count


def end(generations: QuerySet, status: str, code: str, message: str) -> int:
    """End those of these generations still queued or running, keeping their text, and tell
    their followers and their group's; returns how many it ended."""
    now = timezone.now()
    count = 0
    for generation in generations.filter(status__in=ACTIVE):
        claimed = generations.filter(pk=generation.pk, status__in=ACTIVE).update(
            status=status, seq=F("seq") + 1, finished_at=now,
            error_code=code, error_message=message, notice="",
        )  # fmt: skip
        if claimed:
            count += 1
            generation.refresh_from_db()
            _announce(generation.group_name, generation.seq)
            if workflow := getattr(generation, "workflow_run", None):
                _announce(workflow.group_name, workflow.stream_seq())
    return count


def end_group(workflow: WorkflowRun) -> None:
    """Record that a group is over, once, and tell its followers."""
    if workflow.finish():
        _announce(workflow.group_name, workflow.stream_seq())


def _announce(group: str, seq: int | None) -> None:
    """Best effort: a follower that misses it reads Postgres at its next heartbeat."""
    if seq is None:  # deleted with its case
        return
    try:
        async_to_sync(broker.publish_change)(group, seq)
    except Exception:
        logger.warning("Announcing a change failed.", exc_info=True)


def request_stop(generations: list[Generation]) -> None:
    """Ask the processes generating these to stop; they keep what they generated."""
    for generation in generations:
        type(generation).objects.filter(pk=generation.pk, status__in=ACTIVE).update(
            cancel_requested=True
        )
        async_to_sync(broker.signal)(generation.cancel_group)


async def arenew(generations: list[Generation]) -> None:
    """Keep the leases of these generations while this process works on them."""
    expires = new_lease()
    for generation in generations:
        await (
            type(generation)
            .objects.filter(pk=generation.pk, status__in=ACTIVE)
            .aupdate(lease_expires_at=expires)
        )
