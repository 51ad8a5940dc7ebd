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
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import F
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
from workflow.models import ChatMessage, Generation, StageRun, Status, WorkflowRun

logger = logging.getLogger(__name__)

FINISHED = Counter("medhastra_generations_total", "Generations finished.", ["kind", "status"])
RETRIES = Counter("medhastra_provider_retries_total", "Provider attempts retried.", ["code"])

STOPPED = "Stopped by the clinician."

# The event loop keeps only weak references to tasks: these keep running work alive.
_running: set[asyncio.Task] = set()


def start_stage_run(run: StageRun) -> None:
    """Run one stage in the background."""
    _start(_run_stage_by_id(run.pk), [run])


def start_workflow_run(workflow_run: WorkflowRun, runs: list[StageRun]) -> None:
    """Run a group's queued stages in order in the background."""
    _start(_run_workflow(workflow_run.pk), runs)


def start_chat_reply(reply: ChatMessage) -> None:
    """Stream the answer to the clinician's latest question in the background."""
    _start(_run_chat_reply(reply.pk), [reply])


def _start(job: Coroutine, generations: list[Generation]) -> None:
    # A fresh context: the request's context carries its own thread for sync code,
    # which Django closes when the response is sent.
    task = asyncio.get_running_loop().create_task(
        _supervised(job, generations), context=contextvars.Context()
    )
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _supervised(job: Coroutine, generations: list[Generation]) -> None:
    """Run a job while renewing its leases; a job whose case was deleted just stops."""
    lease = asyncio.ensure_future(_keep_leases(generations))
    try:
        await job
    except ObjectDoesNotExist:
        logger.info("A generation stopped: its case was deleted.")
    finally:
        lease.cancel()


async def _keep_leases(generations: list[Generation]) -> None:
    while True:
        await asyncio.sleep(settings.LEASE_SECONDS / 3)
        await leases.arenew(generations)


@dataclass
class _Outlet:
    """Publishes a generation's changes to its own stream and, in a group, to the group's.

    A group's seq is its own plus the sum of its stage runs' seqs: one stage runs at a
    time, so each change raises it by exactly one, like a stage's.
    """

    generation: Generation
    group: str | None = None
    offset: int = 0

    def _streams(self) -> list[tuple[str, int]]:
        seq = self.generation.seq
        streams = [(self.generation.group_name, seq)]
        if self.group:
            streams.append((self.group, self.offset + seq))
        return streams

    async def delta(self, texts: dict[str, str]) -> None:
        for group, seq in self._streams():
            await broker.publish_delta(group, seq, self.generation.pk, texts)

    async def change(self) -> None:
        for group, seq in self._streams():
            await broker.publish_change(group, seq)


async def _run_stage_by_id(stage_run_id: int) -> None:
    run = await StageRun.objects.select_related("case", "continued_from").aget(pk=stage_run_id)
    await _run_stage(run, _Outlet(run))


async def _run_stage(run: StageRun, outlet: _Outlet) -> str:
    """Generate one stage (or carry on from a partial run); returns its final status."""
    engine = get_engine()
    facts = run.case.facts()
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
    runs = [run async for run in workflow.stage_runs.select_related("case").order_by("pk")]
    why_not: str | None = None
    for run in runs:
        offset = workflow.seq + sum(other.seq for other in runs if other is not run)
        outlet = _Outlet(run, workflow.group_name, offset)
        if (
            why_not is None
            and await StageRun.objects.filter(pk=run.pk, cancel_requested=True).aexists()
        ):
            why_not = STOPPED
        if why_not is None:
            status = await _run_stage(run, outlet)
            if status == Status.CANCELLED:
                why_not = STOPPED
            elif status != Status.COMPLETE:
                why_not = f"Not run: {run.stage.title} did not complete."
        else:
            await _set_status(run, Status.CANCELLED, outlet, error_message=why_not)
    await WorkflowRun.objects.filter(pk=workflow.pk).aupdate(
        seq=F("seq") + 1, finished_at=timezone.now()
    )
    workflow.seq += 1
    await broker.publish_change(workflow.group_name, workflow.seq + sum(run.seq for run in runs))


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
    finally:  # what arrived before a failure is kept
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
    if isinstance(exc, ObjectDoesNotExist):
        raise exc
    if exc is not None:
        reference = uuid.uuid4().hex[:8]
        code, message = describe(exc)
        logger.error(
            "%s %s failed: %s (reference %s)", type(generation).__name__, generation.pk, code,
            reference, exc_info=exc,
        )  # fmt: skip
        await _set_status(
            generation, Status.ERROR, outlet, finished_at=timezone.now(), error_code=code,
            error_message=f"{message} (Reference {reference}.)", notice="",
        )  # fmt: skip
        return Status.ERROR
    usage = working.result()
    await _set_status(
        generation, Status.COMPLETE, outlet, finished_at=timezone.now(),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )  # fmt: skip
    return Status.COMPLETE


async def _stop_requested(generation: Generation) -> None:
    """Returns when the clinician asks to stop: a signal, or the flag found in Postgres."""
    model = type(generation)
    async for signalled in broker.signals(generation.cancel_group, tick=1.0):
        if (
            signalled
            or await model.objects.filter(pk=generation.pk, cancel_requested=True).aexists()
        ):
            return


async def _append(generation: Generation, texts: dict[str, str], outlet: _Outlet) -> None:
    if texts:
        await generation.aappend(texts)
        await outlet.delta(texts)


async def _set_status(generation: Generation, status: str, outlet: _Outlet, **fields) -> None:
    await generation.aset_status(status, **fields)
    if generation.finished:
        FINISHED.labels(type(generation).__name__, status).inc()
    await outlet.change()
