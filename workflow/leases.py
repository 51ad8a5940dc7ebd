"""Who is still generating: leases the running process renews, and stop requests.

A generation's process renews its lease while it works; a lease that runs out means the
process died (killed, redeployed), and whoever looks next marks the work interrupted,
keeping every token it had persisted.
"""

from asgiref.sync import async_to_sync
from django.db.models import F
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

INTERRUPTED = "The server generating this stopped before it finished (a restart or a crash)."


def interrupt_abandoned(case_id: int | None = None) -> int:
    """Mark interrupted the generations whose lease ran out, and end the groups that have
    nothing left to run; returns how many generations were interrupted."""
    now = timezone.now()
    count = 0
    for model in (StageRun, ChatMessage):
        expired = model.objects.filter(status__in=ACTIVE, lease_expires_at__lt=now)
        if case_id is not None:
            expired = expired.filter(case_id=case_id)
        for generation in expired:
            claimed = model.objects.filter(
                pk=generation.pk, status__in=ACTIVE, lease_expires_at__lt=now
            ).update(
                status=Status.INTERRUPTED, seq=F("seq") + 1, finished_at=now,
                error_code="interrupted", error_message=INTERRUPTED, notice="",
            )  # fmt: skip
            if claimed:
                count += 1
                generation.refresh_from_db()
                _announce(generation.group_name, generation.seq)
                if workflow := getattr(generation, "workflow_run", None):
                    _announce(workflow.group_name, workflow.stream_seq())
    _end_groups_left_over(case_id)
    return count


def _end_groups_left_over(case_id: int | None) -> None:
    """Groups whose process died between their last stage and their end."""
    unfinished = WorkflowRun.objects.filter(finished_at=None).exclude(stage_runs__status__in=ACTIVE)
    if case_id is not None:
        unfinished = unfinished.filter(case_id=case_id)
    for workflow in unfinished:
        if workflow.finish():
            _announce(workflow.group_name, workflow.stream_seq())


def _announce(group: str, seq: int) -> None:
    async_to_sync(broker.publish_change)(group, seq)


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
