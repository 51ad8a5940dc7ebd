"""The runner: generates stage runs, group runs and chat replies on the server's event loop,
apart from the request that started them.

Each job is supervised: while it runs, its process renews the leases of its generations;
however it ends, none of them stays queued or running. Generated text is persisted flush
by flush before it is published (`Generation.append`), so a follower that reads Postgres
never misses what a live event carried.
"""

import asyncio
import contextvars
import copy
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.db.models import Q

from streaming import broker
from streaming.batches import Batches
from streaming.router import ContentRouter, PlainRouter
from workflow import leases, logs, metrics, phi, stages
from workflow.llm import Chunk, Engine, LLMRequest, Usage, attempts, limits, shared_engine
from workflow.llm.errors import IdleTimeout, cut_off, describe, never_started, refuses_stream
from workflow.models import (
    INTERRUPTED,
    STOPPED,
    ChatMessage,
    ClinicalCase,
    Generation,
    Mode,
    NoLongerActive,
    StageRun,
    Status,
    WorkflowRun,
)
from workflow.stages import Stage
from workflow.writer import writer

logger = logging.getLogger(__name__)

# An answer cut off midway, carried on without a click.
CONNECTION_LOST = "The connection to the AI provider was lost: continuing where it stopped…"
STALLED = "The AI provider went silent: continuing where it stopped…"

Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Ending:
    """How a generation ends when its job did not end it."""

    status: str
    code: str
    message: str


SERVER_STOPPED = Ending(Status.INTERRUPTED, "interrupted", INTERRUPTED)
NOT_RUN = Ending(Status.ERROR, "not_run", "The group stopped early.")

# The event loop keeps only weak references to tasks: these keep running work alive.
_jobs: set[asyncio.Task] = set()


async def start_stages(
    case: ClinicalCase, stage_keys: tuple[str, ...], group_key: str | None, mode: str
) -> tuple[list[StageRun], WorkflowRun | None]:
    """Start these stages (a group's, if `group_key`) and generate them in the background,
    in `mode`; CannotStart says why not."""

    async def start() -> tuple[list[StageRun], WorkflowRun | None]:
        create = sync_to_async(case.start_stage_runs)
        runs, workflow = await create(stage_keys, group_key, shared_engine().label, mode)
        if workflow:
            _launch(partial(_group_job, workflow.pk), runs, workflow)
        else:
            _start_stage_run(runs[0])
        return runs, workflow

    return await _not_cut_off(start())


async def continue_stage(case: ClinicalCase, stage_key: str, mode: str) -> StageRun:
    """Carry on from the partial text of the stage's last run, in the background."""

    async def start() -> StageRun:
        carry_on = sync_to_async(case.continue_stage_run)
        run = await carry_on(stage_key, shared_engine().label, mode)
        _start_stage_run(run)
        return run

    return await _not_cut_off(start())


async def _not_cut_off[T](start: Awaitable[T]) -> T:
    """A start finishes even when the request waiting for it is cancelled (its client
    went away): a run created running must get its job."""
    task = asyncio.ensure_future(start)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
    return await asyncio.shield(task)


def _start_stage_run(run: StageRun) -> None:
    # The job's own copy (the request renders the run meanwhile), which is also the one
    # the lease renewal tells of a stop request.
    run = copy.copy(run)
    _launch(partial(_generate_stage, run), [run])


def start_chat_reply(reply: ChatMessage) -> None:
    """Stream the answer to the clinician's latest question in the background."""
    _launch(partial(_reply_job, reply.pk), [reply])


async def stop_all(seconds: float) -> None:
    """The server is stopping: cut every job short, so that what they generated is saved
    and their generations end interrupted (Continue carries on), waiting at most
    `seconds`."""
    for task in _jobs:
        task.cancel()
    if _jobs:
        await asyncio.wait(set(_jobs), timeout=seconds)


def _launch(job: Job, generations: list[Generation], workflow: WorkflowRun | None = None) -> None:
    # A fresh context: the request's context carries its own thread for sync code,
    # which Django closes when the response is sent.
    task = asyncio.get_running_loop().create_task(
        _supervised(job, generations, workflow), context=contextvars.Context()
    )
    _jobs.add(task)
    task.add_done_callback(_jobs.discard)


async def _supervised(job: Job, generations: list[Generation], workflow: WorkflowRun | None):
    """Run a job while renewing its leases; however it ends, none of its generations stays
    queued or running, and its group ends.

    Jobs share one thread for the ORM: its connection goes back to the pool (or, if it
    broke, is dropped) after each job, as Django does after each request.
    """
    leases.hold(generations)
    cut_off = SERVER_STOPPED  # unless the job says otherwise
    returned = False
    with logs.ids(case=generations[0].case_id):
        try:
            await job()
            returned = True
        except NoLongerActive as exc:
            logger.info("A job stopped: %s", exc)
            cut_off = NOT_RUN
        except Exception:
            reference = _reference()
            logger.exception(
                "A job failed (reference %s).", reference, extra={"reference": reference}
            )
            cut_off = Ending(Status.ERROR, "internal", _failed_on_our_side(reference))
        finally:
            try:
                await _end_left_over(generations, workflow, cut_off, returned)
            except Exception:
                logger.warning("Ending a job's generations failed.", exc_info=True)
            leases.release(generations)
            await sync_to_async(close_old_connections)()


async def _end_left_over(
    generations: list[Generation], workflow: WorkflowRun | None, cut_off: Ending, returned: bool
) -> None:
    """The first generation a job left unfinished was cut off; a group never ran the rest.

    Postgres is asked which are, but of a job that `returned`: a generation it ended (this
    copy says so) did end, its claim committed (one that failed to would have raised)."""
    left_over = set()
    if unsure := [g.pk for g in generations if not (returned and g.finished)]:
        left_over = await type(generations[0]).still_active(unsure)
    for generation in (g for g in generations if g.pk in left_over):
        if await generation.end(cut_off.status, code=cut_off.code, message=cut_off.message):
            cut_off = NOT_RUN
    if workflow:
        await workflow.end()


_STAGE_RUNS = StageRun.objects.select_related("continued_from")


async def _group_job(workflow_id: int) -> None:
    """A group's stages in order, until one does not complete: the rest are not run."""
    why_not: str | None = None
    async for run in _STAGE_RUNS.filter(workflow_run_id=workflow_id).order_by("pk"):
        if why_not is None:
            await _generate_stage(run)
            why_not = _why_the_rest_is_not_run(run)
        else:
            await run.end(Status.CANCELLED, message=why_not)


def _why_the_rest_is_not_run(run: StageRun) -> str | None:
    match run.status:
        case Status.COMPLETE:
            return None
        case Status.CANCELLED:
            return STOPPED
        case Status.STALE:
            return f"What {run.stage.title} built on changed while it ran."
    return f"{run.stage.title} did not complete."


async def _generate_stage(run: StageRun) -> str:
    """Generate one stage (or carry on from a partial run); returns how it ended."""
    missing, earlier = [], run.builds_on_runs
    if earlier is None:  # a group's stage or a Continue: the case as it is now
        missing, earlier = await sync_to_async(_what_it_builds_on)(run)
    if missing:  # made stale since the run was queued: by an edit, or by running it again
        names = " and ".join(stage.title for stage in missing)
        message = f"{names} went out of date first: run {names} again."
        # Never started, even if created running: the page says it was not run.
        await run.end(Status.ERROR, code="not_run", message=message, started_at=None)
        return run.status
    sent = phi.Outgoing(run.case.phi_choice)
    request, router = _stage_request(run, earlier, sent)
    engine = shared_engine()
    if run.status == Status.QUEUED:  # its turn in a group: the first of a start is running
        inputs = run.inputs or {e.stage_key: e.pk for e in earlier}
        if not await run.start(engine=engine.label, inputs=inputs):  # stopped meanwhile
            return run.status
    await _generate(run, partial(_write_stage, run, engine, request, router, sent))
    return run.status


def _what_it_builds_on(run: StageRun) -> tuple[list[Stage], list[StageRun]]:
    run.case = ClinicalCase.objects.get(pk=run.case_id)
    return run.case.builds_on(run.stage)


def _stage_request(
    run: StageRun, earlier: list[StageRun], sent: phi.Outgoing
) -> tuple[LLMRequest, ContentRouter]:
    """The request for a stage (its text as `sent` lets it go), and a router that knows
    where a continued run stopped."""
    facts = [(label, sent(value)) for label, value in run.case.facts()]
    summaries = [(e.stage, sent(e.summary_in_use, e.phi_choice_in_use)) for e in earlier]
    messages = stages.stage_messages(run.stage, facts, summaries)
    router = ContentRouter()
    if run.continued_from is None:
        return LLMRequest(messages), router
    partial_answer = run.continued_from.raw_output()
    router.feed(partial_answer)  # inside the reasoning or the summary
    messages = stages.continuing_messages(messages, sent(partial_answer))
    return LLMRequest(messages, continuing=True), router


async def _write_stage(
    run: StageRun,
    engine: Engine,
    request: LLMRequest,
    router: ContentRouter,
    sent: phi.Outgoing,
    spent: list[Usage],
) -> None:
    await _write(run, engine, request, router, spent)
    if not run.summary.strip():  # the model left it out: ask for it
        ask = LLMRequest(stages.summarising_messages(run.stage, sent(run.reasoning)))
        summary = await engine.complete(ask)
        spent.append(ask.likely_usage(summary))
        await run.append({"summary": summary})


async def _reply_job(reply_id: int) -> None:
    reply = await ChatMessage.objects.select_related("case").aget(pk=reply_id)
    case = reply.case
    earlier = case.chat_messages.filter(queued_at__lt=reply.queued_at).filter(
        Q(role=ChatMessage.Role.USER) | Q(status=Status.COMPLETE)
    )
    completed = await sync_to_async(case.completed_runs)()
    sent = phi.Outgoing(case.phi_choice)
    messages = stages.chat_messages(
        [(label, sent(value)) for label, value in case.facts()],
        [(run.stage, sent(run.summary_in_use, run.phi_choice_in_use)) for run in completed],
        [(m.role, sent(m.content, _choice(m))) async for m in earlier],
    )
    engine = shared_engine()
    if await reply.start(engine=engine.label):  # else stopped before it started
        router = PlainRouter("content")
        await _generate(reply, partial(_write, reply, engine, LLMRequest(messages), router))


def _choice(message: ChatMessage) -> str:
    """A question's own choice for its identifiers; a reply goes as the case does."""
    return message.phi_choice if message.role == ChatMessage.Role.USER else ""


async def _generate(generation: Generation, write: Callable[[list[Usage]], Awaitable[None]]):
    """Write the answer unless the clinician stops it, then end the generation as it went,
    with the tokens the provider counted for it however it ended (a clinician's daily
    budget is spent by stopped and failed generations too)."""
    spent: list[Usage] = []
    logged_as = "run" if isinstance(generation, StageRun) else "reply"
    with logs.ids(**{logged_as: generation.pk}), metrics.RUNNING.track_inprogress():
        try:
            await _unless_stopped(generation, partial(write, spent))
        except _Stopped:
            stopped = {"code": "cancelled", "message": STOPPED}
            await generation.end(Status.CANCELLED, **stopped, **_tokens(spent))
        except NoLongerActive:
            raise
        except Exception as exc:
            code, message = _failure(generation, exc)
            await generation.end(Status.ERROR, code=code, message=message, **_tokens(spent))
        else:
            await generation.end(Status.COMPLETE, **_tokens(spent))


def _tokens(spent: list[Usage]) -> dict[str, int]:
    if not spent:  # nothing reached the provider, or nothing it answered
        return {}
    return {
        "prompt_tokens": sum(usage.prompt_tokens for usage in spent),
        "completion_tokens": sum(usage.completion_tokens for usage in spent),
    }


async def _write(
    generation: Generation,
    engine: Engine,
    request: LLMRequest,
    router: ContentRouter | PlainRouter,
    spent: list[Usage],
) -> None:
    """Write the answer into the generation: streamed, unless it is made in batch mode or
    the provider cannot stream it (then whole, in one answer). Each request's usage goes
    into `spent`: as the provider reported it, else likely."""
    pending = writer()
    limit = limits()
    failures: list[BaseException] = []  # the attempts' errors, in case it falls back

    async def retrying(exc: BaseException, attempt: int) -> None:
        failures.append(exc)
        await _retrying(generation, exc, attempt)

    deadline = asyncio.get_running_loop().time() + limit.deadline
    clock = _TokenClock()
    try:
        if generation.mode == Mode.STREAM:
            try:
                ask = partial(
                    attempts.chunks, engine, limits=limit, on_retry=retrying, deadline=deadline
                )
                await _stream(generation, ask, request, router, spent, pending, clock)
            except Exception as exc:
                refused = refuses_stream(exc) or all(map(never_started, [*failures, exc]))
                if clock.last is not None or not refused:
                    raise
                metrics.FALLBACKS.labels("batch").inc()
                await generation.fall_back_to_batch()
        if generation.mode == Mode.BATCH:
            try:
                whole = await attempts.whole(engine, request, limit, retrying, deadline)
            except asyncio.CancelledError:  # stopped while the provider wrote: it was asked
                spent.append(request.likely_usage(""))
                raise
            pending.add(generation, router.feed(whole.reasoning, thinking=True))
            pending.add(generation, router.feed(whole.content))
            spent.append(whole.usage or request.likely_usage(whole.content))
        pending.add(generation, router.close())
    finally:
        # What came before a failure or a stop is kept. The router may still hold the
        # start of a tag back: that is not text, and a continuation writes it again.
        await pending.close(generation)


async def _stream(
    generation: Generation,
    ask: Callable[[LLMRequest], AsyncIterator[Chunk]],
    request: LLMRequest,
    router: ContentRouter | PlainRouter,
    spent: list[Usage],
    pending: Batches,
    clock: "_TokenClock",
) -> None:
    """Stream the answer in (`ask`: the attempts at a request); reading never waits for a
    save. An answer cut off midway is carried on from where it stopped, as often as the
    limits allow."""
    carry_ons = limits().auto_continues
    while True:
        # The answer as written, for a carry-on: one buffer, not a list of every token's
        # string (about 100 bytes apiece, the most an open stream held, measured).
        written = io.StringIO()
        reported: list[Usage] = []
        try:
            async with aclosing(ask(request)) as chunks:
                async for chunk in chunks:
                    if chunk.content or chunk.reasoning:
                        clock.tick()
                    pending.add(generation, router.feed(chunk.reasoning, thinking=True))
                    pending.add(generation, router.feed(chunk.content))
                    written.write(chunk.content)
                    if chunk.usage:
                        reported.append(chunk.usage)
            return
        except Exception as exc:
            if not (carry_ons and cut_off(exc) and written.tell()):
                raise
            notice = STALLED if isinstance(exc, IdleTimeout) else CONNECTION_LOST
        finally:  # also when it failed or was stopped midway
            answered = written.getvalue()
            spent.extend(reported or ([request.likely_usage(answered)] if answered else []))
        carry_ons -= 1
        request = _carried_on(request, answered)
        await generation.set_notice(notice)


class _TokenClock:
    """Times a generation's answer for the metrics: to its first token, then between
    tokens."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.began = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if self.last is None:
            metrics.TIME_TO_FIRST_TOKEN.observe(now - self.began)
        else:
            metrics.TOKEN_GAP.observe(now - self.last)
        self.last = now


def _carried_on(request: LLMRequest, more: str) -> LLMRequest:
    """The request again, asking the model to carry on after `more`."""
    messages, partial_answer = request.messages, ""
    if request.continuing:  # it already carried on from an earlier partial answer
        *messages, said, _ = messages
        partial_answer = said["content"]
    return LLMRequest(stages.continuing_messages(messages, partial_answer + more), continuing=True)


async def _retrying(generation: Generation, exc: BaseException, attempt: int) -> None:
    code, _ = describe(exc)
    metrics.PROVIDER_RETRIES.labels(code).inc()
    why = "is busy" if code == "rate_limited" else "did not answer"
    of = f"{attempt} of {limits().attempts}"
    await generation.set_notice(f"The AI provider {why}: retrying ({of})…")


class _Stopped(Exception):
    """The clinician stopped the generation."""


async def _unless_stopped[T](generation: Generation, work: Callable[[], Awaitable[T]]) -> T:
    """The work's result, or _Stopped when the clinician stops it first (the work keeps
    what it generated on the way out)."""
    working = asyncio.ensure_future(work())
    watching = asyncio.ensure_future(_stop_requested(generation))
    try:
        await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not working.done():
            working.cancel()
            await asyncio.wait({working})
    if working.cancelled():
        raise _Stopped
    return working.result()


async def _stop_requested(generation: Generation) -> None:
    """Returns when the clinician asks to stop: a signal, or the flag read back from
    Postgres, once when this starts listening (a Stop may have come just before), then by
    each save and each lease renewal (should a signal be lost)."""
    while True:
        try:
            listening = False
            async for signalled in broker.signals(generation.stop_group, tick=1.0):
                if not listening:
                    listening = True
                    await generation.read_stop_flag()
                if signalled or generation.cancel_requested:
                    return
        except Exception:  # a failed check is no reason to stop generating
            logger.warning("Checking for a stop request failed; checking again.", exc_info=True)
            await asyncio.sleep(1.0)


def _failure(generation: Generation, exc: BaseException) -> tuple[str, str]:
    """The error code and message of a failed generation; the log line has its reference."""
    reference = _reference()
    code, message = describe(exc)
    if code != "internal":
        metrics.PROVIDER_ERRORS.labels(code).inc()
    # A provider's error may quote the request: only unexpected errors log a traceback.
    logger.error(
        "%s %s failed: %s (%s, reference %s)",
        type(generation).__name__,
        generation.pk,
        code,
        type(exc).__name__,
        reference,
        exc_info=exc if code == "internal" else None,
        extra={"reference": reference},
    )
    return code, f"{message} (Reference {reference}.)"


def _reference() -> str:
    return uuid.uuid4().hex[:8]


def _failed_on_our_side(reference: str) -> str:
    return f"Something went wrong on our side. (Reference {reference}.)"
