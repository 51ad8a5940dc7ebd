"""The runner: generates stage runs, group runs and chat replies on the server's event loop,
apart from the request that started them.

Each flush of generated text is persisted before it is published, so a follower that
reads Postgres never misses what a live event carried. While a job runs, its process
renews the leases of its generations and listens for a stop request.
"""

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Coroutine
from contextlib import contextmanager
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from prometheus_client import Counter

from streaming import broker
from streaming.router import Coalescer, ContentRouter, PlainRouter
from workflow import leases, stages
from workflow.llm import Engine, LLMRequest, Usage, get_engine, limits
from workflow.llm.errors import (
    DeadlineExceeded,
    FirstTokenTimeout,
    IdleTimeout,
    backoff_delay,
    describe,
    retryable,
)
from workflow.models import (
    ChatMessage,
    ClinicalCase,
    Generation,
    NoLongerActive,
    StageRun,
    Status,
    WorkflowRun,
)

logger = logging.getLogger(__name__)

FINISHED = Counter("medhastra_generations_total", "Generations finished.", ["kind", "status"])
RETRIES = Counter("medhastra_provider_retries_total", "Provider attempts retried.", ["code"])

STOPPED = "Stopped by the clinician."
FAILED = "Something went wrong on our side."
NOT_RUN = (Status.ERROR, "not_run", "The group stopped early.")

# The event loop keeps only weak references to tasks: these keep running work alive.
_running: set[asyncio.Task] = set()


def start_stage_run(run: StageRun) -> None:
    """Run one stage in the background."""
    _start(_run_stage_by_id(run.pk), [run])


def start_workflow_run(workflow_run: WorkflowRun, runs: list[StageRun]) -> None:
    """Run a group's queued stages in order in the background."""
    _start(_run_workflow(workflow_run.pk), runs, workflow_run)


def start_chat_reply(reply: ChatMessage) -> None:
    """Stream the answer to the clinician's latest question in the background."""
    _start(_run_chat_reply(reply.pk), [reply])


def _start(
    job: Coroutine, generations: list[Generation], workflow: WorkflowRun | None = None
) -> None:
    # A fresh context: the request's context carries its own thread for sync code,
    # which Django closes when the response is sent.
    task = asyncio.get_running_loop().create_task(
        _supervised(job, generations, workflow), context=contextvars.Context()
    )
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _supervised(
    job: Coroutine, generations: list[Generation], workflow: WorkflowRun | None
) -> None:
    """Run a job while renewing its leases; however it ends, none of its generations stays
    queued or running, and its group ends.

    Jobs share one thread for the ORM: its connection goes back to the pool (or, if it
    broke, is dropped) between jobs, as Django does between requests.
    """
    await sync_to_async(close_old_connections)()
    lease = asyncio.ensure_future(_keep_leases(generations))
    # How the generation a job was working on ends if the job left it unfinished.
    cut_off = (Status.INTERRUPTED, "interrupted", leases.INTERRUPTED)  # the server stops
    try:
        await job
    except NoLongerActive as exc:
        logger.info("A job stopped: %s", exc)
        cut_off = NOT_RUN
    except Exception:
        reference = uuid.uuid4().hex[:8]
        logger.exception("A job failed (reference %s).", reference)
        cut_off = (Status.ERROR, "internal", f"{FAILED} (Reference {reference}.)")
    finally:
        lease.cancel()
        try:
            await sync_to_async(_end_left_over)(generations, workflow, cut_off)
        except Exception:
            logger.warning("Ending a job's generations failed.", exc_info=True)
        await sync_to_async(close_old_connections)()


def _end_left_over(generations: list[Generation], workflow: WorkflowRun | None, cut_off) -> None:
    """The first generation a job left unfinished was cut off; a group never ran the rest."""
    for generation in generations:
        if leases.end(type(generation).objects.filter(pk=generation.pk), *cut_off):
            cut_off = NOT_RUN
    if workflow:
        leases.end_group(workflow)


async def _keep_leases(generations: list[Generation]) -> None:
    while True:
        await asyncio.sleep(settings.LEASE_SECONDS / 3)
        try:
            await leases.arenew(generations)
        except Exception:
            logger.warning("Renewing leases failed; trying again.", exc_info=True)


@dataclass
class _Outlet:
    """Publishes a generation's persisted changes to its own stream and, in a group, to the
    group's.

    Best effort: a follower that misses an event reads Postgres at its next heartbeat.
    """

    generation: Generation
    workflow: WorkflowRun | None = None
    group_seq: int | None = None  # the group stream's seq after this outlet's last change

    async def delta(self, texts: dict[str, str]) -> None:
        generation = self.generation
        with _logged("Publishing text failed."):
            await broker.publish_delta(generation.group_name, generation.seq, generation.pk, texts)
            await self._to_group(texts)

    async def change(self) -> None:
        with _logged("Publishing a change failed."):
            await broker.publish_change(self.generation.group_name, self.generation.seq)
            await self._to_group(None)

    async def _to_group(self, texts: dict[str, str] | None) -> None:
        if not self.workflow:
            return
        before, self.group_seq = self.group_seq, await self.workflow.astream_seq()
        if self.group_seq is None:  # deleted with its case
            return
        # Other requests change the group's runs too (an edit makes them stale): text that
        # does not follow what the group's followers show is published as a change.
        if texts and before is not None and self.group_seq == before + 1:
            await broker.publish_delta(
                self.workflow.group_name, self.group_seq, self.generation.pk, texts
            )
        else:
            await broker.publish_change(self.workflow.group_name, self.group_seq)


@contextmanager
def _logged(failure: str):
    try:
        yield
    except Exception:
        logger.warning(failure, exc_info=True)


_STAGE_RUNS = StageRun.objects.select_related("case", "continued_from")


async def _run_stage_by_id(stage_run_id: int) -> None:
    run = await _STAGE_RUNS.aget(pk=stage_run_id)
    await _run_stage(run, _Outlet(run))


async def _run_stage(run: StageRun, outlet: _Outlet) -> str:
    """Generate one stage (or carry on from a partial run); returns its final status."""
    engine = get_engine()
    run.case = await ClinicalCase.objects.aget(pk=run.case_id)  # as it is now, in a group too
    facts = run.case.facts()
    missing = await sync_to_async(run.case.missing_for)((run.stage_key,))
    if missing:  # made stale since the run was queued: by an edit, or by running it again
        names = " and ".join(stage.title for stage in missing)
        await _set_status(
            run, Status.ERROR, outlet, finished_at=timezone.now(), error_code="not_run",
            error_message=f"{names} went out of date first: run {names} again.",
        )  # fmt: skip
        return run.status
    earlier = await sync_to_async(run.case.completed_runs)(before=run.stage)
    messages = stages.stage_messages(run.stage, facts, [(e.stage, e.summary) for e in earlier])
    router = ContentRouter()
    if run.continued_from:
        prefix = run.continued_from.raw_output()
        messages = stages.continuing_messages(messages, prefix)
        router.feed(prefix)  # where the partial text stopped: inside the reasoning or summary
    request = LLMRequest(messages, run.stage_key, facts)
    inputs = run.inputs or {e.stage_key: e.pk for e in earlier}
    await _set_status(
        run, Status.RUNNING, outlet, started_at=timezone.now(), engine=engine.label, inputs=inputs
    )

    async def generate() -> Usage | None:
        usage = await _stream(run, engine, request, router, outlet)
        if not run.summary.strip():
            ask = stages.summarising_messages(run.stage, run.reasoning)
            summary = await engine.complete(LLMRequest(ask, run.stage_key, facts))
            await _append(run, {"summary": summary}, outlet)
        return usage

    return await _finish(run, outlet, generate())


async def _run_workflow(workflow_run_id: int) -> None:
    workflow = await WorkflowRun.objects.aget(pk=workflow_run_id)
    why_not: str | None = None
    async for run in _STAGE_RUNS.filter(workflow_run=workflow).order_by("pk"):
        outlet = _Outlet(run, workflow)
        if why_not is None and await _stop_flagged(run):
            why_not = STOPPED
        if why_not is not None:
            await _set_status(run, Status.CANCELLED, outlet, error_message=why_not)
            continue
        status = await _run_stage(run, outlet)
        if status == Status.CANCELLED:
            why_not = STOPPED
        elif status == Status.STALE:
            why_not = f"What {run.stage.title} built on changed while it ran."
        elif status != Status.COMPLETE:
            why_not = f"{run.stage.title} did not complete."


async def _stop_flagged(generation: Generation) -> bool:
    return await type(generation).objects.filter(pk=generation.pk, cancel_requested=True).aexists()


async def _run_chat_reply(reply_id: int) -> None:
    reply = await ChatMessage.objects.select_related("case").aget(pk=reply_id)
    case = reply.case
    engine = get_engine()
    earlier = case.chat_messages.filter(queued_at__lt=reply.queued_at)
    conversation = [
        message
        async for message in earlier
        if message.role == ChatMessage.Role.USER or message.status == Status.COMPLETE
    ]
    completed = await sync_to_async(case.completed_runs)()
    facts = case.facts()
    messages = stages.chat_messages(
        facts,
        [(r.stage, r.summary) for r in completed],
        [(m.role, m.content) for m in conversation],
    )
    question = conversation[-1].content if conversation else ""
    request = LLMRequest(messages, None, facts, question=question)
    outlet = _Outlet(reply)
    await _set_status(reply, Status.RUNNING, outlet, started_at=timezone.now(), engine=engine.label)
    await _finish(reply, outlet, _stream(reply, engine, request, PlainRouter("content"), outlet))


async def _stream(
    generation: Generation, engine: Engine, request: LLMRequest, router, outlet: _Outlet
) -> Usage | None:
    """Stream the answer into the generation, retrying what failed before any text came."""
    limit = limits()
    coalescer = Coalescer(settings.STREAM_FLUSH_INTERVAL)
    usage: Usage | None = None
    received = False
    try:
        async with asyncio.timeout(limit.deadline):
            for attempt in range(1, limit.attempts + 1):
                deltas = aiter(engine.stream(request))
                try:
                    while True:
                        wait = limit.idle_timeout if received else limit.first_token_timeout
                        try:
                            async with asyncio.timeout(wait):
                                delta = await anext(deltas)
                        except TimeoutError:
                            raise (IdleTimeout if received else FirstTokenTimeout)() from None
                        received = received or bool(delta.content or delta.reasoning)
                        coalescer.add(router.feed(delta.reasoning, thinking=True))
                        coalescer.add(router.feed(delta.content))
                        usage = delta.usage or usage
                        if coalescer.due():
                            await _append(generation, coalescer.take(), outlet)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    if received or not retryable(exc) or attempt == limit.attempts:
                        raise
                    await _wait_to_retry(generation, outlet, exc, attempt, limit)
                finally:
                    await deltas.aclose()
        coalescer.add(router.close())
    except TimeoutError as exc:
        if isinstance(exc, IdleTimeout | FirstTokenTimeout):
            raise
        raise DeadlineExceeded() from exc
    finally:
        # What arrived before a failure or a stop is kept. The router may still hold the
        # start of a tag back: that is not text, and a continuation writes it again.
        await _append(generation, coalescer.take(), outlet)
    if generation.notice:
        await _set_status(generation, generation.status, outlet, notice="")
    return usage


async def _wait_to_retry(generation, outlet, exc: Exception, attempt: int, limit) -> None:
    code, _ = describe(exc)
    RETRIES.labels(code).inc()
    notice = f"The AI provider is busy: retrying ({attempt + 1} of {limit.attempts})…"
    if code != "rate_limited":
        notice = f"The AI provider did not answer: retrying ({attempt + 1} of {limit.attempts})…"
    await _set_status(generation, generation.status, outlet, notice=notice)
    await asyncio.sleep(backoff_delay(exc, attempt, limit.backoff, limit.backoff_max))


async def _finish(generation: Generation, outlet: _Outlet, work: Coroutine) -> str:
    """Await the work unless the clinician stops it, and record how it ended."""
    working = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(_stop_requested(generation))
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not working.done():
            working.cancel()
            await asyncio.wait({working})  # it keeps what it generated on the way out
    if working.cancelled():
        await _set_status(
            generation, Status.CANCELLED, outlet, finished_at=timezone.now(),
            error_code="cancelled", error_message=STOPPED, notice="",
        )  # fmt: skip
        return Status.CANCELLED
    exc = working.exception()
    if isinstance(exc, NoLongerActive):
        raise exc
    if exc is not None:
        reference = uuid.uuid4().hex[:8]
        code, message = describe(exc)
        # A provider's error may quote the request: only unexpected errors log a traceback.
        logger.error(
            "%s %s failed: %s (%s, reference %s)", type(generation).__name__, generation.pk,
            code, type(exc).__name__, reference, exc_info=exc if code == "internal" else None,
        )  # fmt: skip
        await _set_status(
            generation, Status.ERROR, outlet, finished_at=timezone.now(), error_code=code,
            error_message=f"{message} (Reference {reference}.)", notice="",
        )  # fmt: skip
        return Status.ERROR
    usage = working.result()
    await _changed(generation, outlet, generation.acomplete(
        finished_at=timezone.now(),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    ))  # fmt: skip
    return generation.status


async def _stop_requested(generation: Generation) -> None:
    """Returns when the clinician asks to stop: a signal, or the flag found in Postgres."""
    while True:
        try:
            async for signalled in broker.signals(generation.cancel_group, tick=1.0):
                if signalled or await _stop_flagged(generation):
                    return
        except Exception:  # a failed check is no reason to stop generating
            logger.warning("Checking for a stop request failed; checking again.", exc_info=True)
            await asyncio.sleep(1.0)


async def _append(generation: Generation, texts: dict[str, str], outlet: _Outlet) -> None:
    async def persist() -> None:
        await generation.aappend(texts)
        await outlet.delta(texts)

    if texts:
        await _to_the_end(persist())


async def _set_status(generation: Generation, status: str, outlet: _Outlet, **fields) -> None:
    await _changed(generation, outlet, generation.aset_status(status, **fields))


async def _changed(generation: Generation, outlet: _Outlet, change: Coroutine) -> None:
    async def persist() -> None:
        await change
        if generation.finished:
            FINISHED.labels(type(generation).__name__, generation.status).inc()
        await outlet.change()

    await _to_the_end(persist())


async def _to_the_end[T](change: Coroutine[None, None, T]) -> T:
    """Persist and publish a change whole even when a stop cancels the caller meanwhile:
    half of it would leave the seq in memory behind the one in Postgres."""
    task = asyncio.ensure_future(change)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
