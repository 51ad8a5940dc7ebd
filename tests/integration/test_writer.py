"""Saving the text of many generations at once, beside the renewal of their leases."""

import asyncio
import random

import pytest

from tests.conftest import run_async
from workflow.models import ClinicalCase, Generation, StageRun, Status

pytestmark = pytest.mark.django_db(transaction=True)


def test_saves_and_lease_renewals_of_the_same_generations_at_once_never_deadlock(alice):
    runs = [
        StageRun.objects.create(
            case=ClinicalCase.objects.create(owner=alice, chief_complaint=f"Case {n}"),
            stage_key="summary",
            status=Status.RUNNING,
        )
        for n in range(40)
    ]
    rounds = 60

    async def save():
        for n in range(rounds):
            batch = {run: {"reasoning": f"{n} "} for run in random.sample(runs, len(runs))}
            assert await Generation.append_all(batch) == {}

    async def renew():
        for _ in range(rounds):
            await StageRun.renew_leases(random.sample([run.pk for run in runs], len(runs)))

    async def at_once():
        await asyncio.gather(save(), renew(), renew())

    run_async(at_once())

    expected = "".join(f"{n} " for n in range(rounds))
    assert all(run.reasoning == expected for run in StageRun.objects.all())
