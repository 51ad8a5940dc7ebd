"""However a job ends, nothing it started stays queued or running, and followers hear."""

import asyncio
import contextlib
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from tests.conftest import run_async
from workflow import runner
from workflow.models import NoLongerActive, StageRun, Status, WorkflowRun

pytestmark = pytest.mark.django_db(transaction=True)


async def _fails():
    raise RuntimeError("a bug")


def _group(case):
    return case.start_stage_runs(("summary", "differential"), "assessment")


def test_a_stage_job_that_fails_unexpectedly_ends_in_error_with_a_reference_at_once(case):
    [run], _ = case.start_stage_runs(("summary",))

    run_async(runner._supervised(_fails, [run], None))

    run.refresh_from_db()
    assert run.status == Status.ERROR and run.error_code == "internal"
    assert run.error_message.startswith("Something went wrong on our side")
    assert "(Reference " in run.error_message


def test_a_job_that_failed_after_its_copy_of_the_run_said_ended_still_ends_the_run(case):
    """An ending whose commit failed leaves the job's copy of the run ended, not Postgres."""
    [run], _ = case.start_stage_runs(("summary",))

    async def ended_in_memory_only():
        run.status = Status.COMPLETE
        raise RuntimeError("the connection dropped as the ending committed")

    run_async(runner._supervised(ended_in_memory_only, [run], None))

    assert StageRun.objects.get().status == Status.ERROR


def test_a_group_job_that_fails_ends_its_first_stage_in_error_and_the_rest_notrun_async(case):
    runs, workflow = _group(case)

    run_async(runner._supervised(_fails, runs, workflow))

    summary, differential = StageRun.objects.order_by("pk")
    assert summary.status == Status.ERROR and "(Reference " in summary.error_message
    assert differential.status == Status.ERROR
    assert differential.error_message == "The group stopped early."
    assert WorkflowRun.objects.get().finished_at is not None


def test_a_group_whose_stage_another_process_interrupted_ends_with_the_rest_notrun_async(case):
    runs, workflow = _group(case)
    StageRun.objects.filter(pk=runs[0].pk).update(status=Status.INTERRUPTED)

    async def taken_over():
        raise NoLongerActive("interrupted elsewhere")

    run_async(runner._supervised(taken_over, runs, workflow))

    summary, differential = StageRun.objects.order_by("pk")
    assert summary.status == Status.INTERRUPTED
    assert differential.error_message == "The group stopped early."
    assert WorkflowRun.objects.get().finished_at is not None


def test_group_text_after_someone_else_changed_the_group_is_published_as_a_change(case):
    """A delta whose seq also counts another request's change would make a page that read
    the snapshot in between show the text twice."""
    (summary, differential), workflow = _group(case)
    StageRun.objects.filter(pk=summary.pk).update(status=Status.COMPLETE)

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(workflow.stream_group, channel)
        await differential.start()
        await differential.append({"reasoning": "first words"})
        await sync_to_async(case.mark_all_stale)()  # the clinician edits the case
        await differential.append({"reasoning": " and more"})
        return [await layer.receive(channel) for _ in range(3)]

    running, first_words, after_the_edit = run_async(scenario())
    assert first_words.pop("at") > 0  # when it was published, for the delivery lag
    assert first_words == {
        "type": "run.event", "seq": running["seq"] + 1, "id": differential.pk,
        "texts": {"reasoning": "first words"},
    }  # fmt: skip
    assert after_the_edit == {"type": "run.event", "seq": running["seq"] + 3}
    assert after_the_edit["seq"] == workflow.stream_seq()


def test_a_stop_whose_signal_was_lost_still_stops_the_stage_within_seconds(case, settings):
    """The flag is in Postgres, but no signal reached the process generating the stage."""
    settings.LLM_BASE_URL = settings.LLM_API_KEY = None  # the offline demo engine
    settings.DEMO_WORDS_PER_SECOND = 20
    [run], _ = case.start_stage_runs(("summary",))
    StageRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    started = time.monotonic()

    status = run_async(runner._generate_stage(StageRun.objects.get(pk=run.pk)))

    assert status == Status.CANCELLED
    assert time.monotonic() - started < 5, "the demo stage alone takes over 10 s"
    assert StageRun.objects.get(pk=run.pk).reasoning, "what it wrote before is kept"


def test_a_start_whose_request_is_cancelled_still_generates_its_stage(case, settings):
    """The clinician clicks Run and closes the tab at once: the run, created running,
    gets its job all the same (else Stop could not end it, nor could it run again)."""
    settings.LLM_BASE_URL = settings.LLM_API_KEY = None  # the offline demo engine
    settings.DEMO_WORDS_PER_SECOND = 2000

    async def click_and_go():
        starting = asyncio.ensure_future(runner.start_stages(case, ("summary",), None, "stream"))
        await asyncio.sleep(0)  # the request is under way
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        async with asyncio.timeout(10):
            await asyncio.wait(asyncio.all_tasks() - {asyncio.current_task()})  # the start
            await asyncio.wait(set(runner._jobs))

    run_async(click_and_go())

    assert StageRun.objects.get(case=case).status == Status.COMPLETE


def test_a_continue_whose_input_went_out_of_date_first_says_it_was_not_run(case):
    summary = StageRun.objects.create(case=case, stage_key="summary", status=Status.COMPLETE)
    StageRun.objects.create(
        case=case,
        stage_key="differential",
        status=Status.INTERRUPTED,
        reasoning="Half a differential",
        inputs={"summary": summary.pk},
    )
    continued = case.continue_stage_run("differential", engine="an engine")
    assert continued.status == Status.RUNNING
    case.mark_all_stale()  # the clinician edits the case before it reaches the provider

    status = run_async(runner._generate_stage(continued))

    continued.refresh_from_db()
    assert (status, continued.error_code) == (Status.ERROR, "not_run")
    assert continued.started_at is None, "the page says it was not run"
