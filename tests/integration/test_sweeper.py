"""The lease sweeper: work whose process died turns interrupted; live work is left alone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import run_async
from workflow import sweeper
from workflow.models import StageRun, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)


def _running(run: StageRun, *, lease_left: float, reasoning: str = "") -> None:
    lease = timezone.now() + timedelta(seconds=lease_left)
    StageRun.objects.filter(pk=run.pk).update(
        status="running", lease_expires_at=lease, reasoning=reasoning
    )


def test_it_interrupts_work_whose_lease_ran_out_and_keeps_its_text(case):
    (dead, _), workflow = case.start_stage_runs(("summary", "differential"), "assessment")
    _running(dead, lease_left=-1, reasoning="What the dead process wrote")
    StageRun.objects.filter(stage_key="differential").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    run_async(sweeper.sweep())  # the suite's live server may sweep some of them first

    dead.refresh_from_db()
    assert (dead.status, dead.error_code) == ("interrupted", "interrupted")
    assert dead.reasoning == "What the dead process wrote"
    assert WorkflowRun.objects.get(pk=workflow.pk).finished_at is not None


def test_it_leaves_live_work_alone(case):
    [live], _ = case.start_stage_runs(("summary",))
    _running(live, lease_left=10)

    assert run_async(sweeper.sweep()) == 0

    assert StageRun.objects.get(pk=live.pk).status == "running"


def test_work_whose_lease_was_renewed_after_the_sweep_read_it_goes_on(case):
    """Its process was only slow: the sweep must not cut it off."""
    [run], _ = case.start_stage_runs(("summary",))
    _running(run, lease_left=10)  # renewed since the sweep read it with its lease out
    seen = StageRun.objects.get(pk=run.pk)

    assert run_async(sweeper.interrupt(seen)) is False
    assert StageRun.objects.get(pk=run.pk).status == "running"
