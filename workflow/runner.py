"""The runner: generates stage runs, group runs and chat replies on the server's event loop,
apart from the request that started them.

Each flush of generated text is persisted before it is published, so a follower that
reads Postgres never misses what a live event carried.
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
from workflow import stages
from workflow.llm import Engine, LLMRequest, Usage, get_engine
from workflow.llm.errors import describe
from workflow.models import ChatMessage, Generation, StageRun, Status, WorkflowRun

logger = logging.getLogger(__name__)

FINISHED = Counter("medhastra_generations_total", "Generations finished.", ["kind", "status"])

# The event loop keeps only weak references to tasks: these keep running work alive.
_running: set[asyncio.Task] = set()


def _start(coroutine: Coroutine) -> None:
    # A fresh context: the request's context carries its own thread for sync code,
    # which Django closes when the response is sent.
    task = asyncio.get_running_loop().create_task(_unless_deleted(coroutine),
                                                  context=contextvars.Context())  # fmt: skip
    _running.add(task)
    task.add_done_callback(_running.discard)


def start_stage_run(run: StageRun) -> None:
    """Run one stage in the background."""
    _start(_run_stage_by_id(run.pk))


def start_workflow_run(workflow_run: WorkflowRun) -> None:
    """Run a group's queued stages in order in the background."""
    _start(_run_workflow(workflow_run.pk))


def start_chat_reply(reply: ChatMessage) -> None:
    """Stream the answer to the clinician's latest question in the background."""
    _start(_run_chat_reply(reply.pk))


async def _unless_deleted(coroutine: Coroutine) -> None:
    """A run whose case was deleted stops at its next write: nobody can see it any more."""
    try:
        await coroutine
    except ObjectDoesNotExist:
        logger.info("A generation stopped: its case was deleted.")


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
    run = await StageRun.objects.select_related("case").aget(pk=stage_run_id)
    await _run_stage(run, _Outlet(run))


async def _run_stage(run: StageRun, outlet: _Outlet) -> str:
    """Generate one stage; returns its final status."""
    engine = get_engine()
    facts = run.case.facts()
    earlier = await sync_to_async(run.case.completed_runs)(before=run.stage)
    messages = stages.stage_messages(run.stage, facts, [(e.stage, e.summary) for e in earlier])
    request = LLMRequest(messages, run.stage_key, facts)
    await _set_status(
        run, Status.RUNNING, outlet, started_at=timezone.now(), engine=engine.label,
        inputs={e.stage_key: e.pk for e in earlier},
    )  # fmt: skip

    async def generate() -> Usage | None:
        usage = await _stream(run, engine, request, ContentRouter(), outlet)
        if not run.summary.strip():
            ask = stages.summarising_messages(run.stage, run.reasoning)
            summary = await engine.complete(LLMRequest(ask, run.stage_key, facts))
            await _append(run, {"summary": summary}, outlet)
        return usage

    return await _finish(run, outlet, generate())


async def _run_workflow(workflow_run_id: int) -> None:
    workflow = await WorkflowRun.objects.aget(pk=workflow_run_id)
    runs = [run async for run in workflow.stage_runs.select_related("case").order_by("pk")]
    failed: StageRun | None = None
    for run in runs:
        offset = workflow.seq + sum(other.seq for other in runs if other is not run)
        outlet = _Outlet(run, workflow.group_name, offset)
        if failed is None:
            if await _run_stage(run, outlet) != Status.COMPLETE:
                failed = run
        else:
            message = f"Not run: {failed.stage.title} did not complete."
            await _set_status(run, Status.CANCELLED, outlet, error_message=message)
    await WorkflowRun.objects.filter(pk=workflow.pk).aupdate(
        seq=F("seq") + 1, finished_at=timezone.now()
    )
    workflow.seq += 1
    await broker.publish_change(workflow.group_name, workflow.seq + sum(run.seq for run in runs))


async def _run_chat_reply(reply_id: int) -> None:
    reply = await ChatMessage.objects.select_related("case").aget(pk=reply_id)
    case = reply.case
    engine = get_engine()
    conversation = [
        message
        async for message in case.chat_messages.filter(queued_at__lt=reply.queued_at).exclude(
            role=ChatMessage.Role.ASSISTANT, content=""
        )
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
    coalescer = Coalescer(settings.STREAM_FLUSH_INTERVAL)
    usage: Usage | None = None
    try:
        async for delta in engine.stream(request):
            coalescer.add(router.feed(delta.reasoning, thinking=True))
            coalescer.add(router.feed(delta.content))
            usage = delta.usage or usage
            if coalescer.due():
                await _append(generation, coalescer.take(), outlet)
        coalescer.add(router.close())
    finally:  # what arrived before a failure is kept
        await _append(generation, coalescer.take(), outlet)
    return usage


async def _finish(generation: Generation, outlet: _Outlet, work: Coroutine) -> str:
    """Await the generating work and record how it ended; returns the final status."""
    try:
        usage = await work
    except ObjectDoesNotExist:
        raise
    except Exception as exc:
        reference = uuid.uuid4().hex[:8]
        code, message = describe(exc)
        logger.exception(
            "%s %s failed: %s (reference %s)", type(generation).__name__, generation.pk, code,
            reference,
        )  # fmt: skip
        await _set_status(
            generation, Status.ERROR, outlet, finished_at=timezone.now(), error_code=code,
            error_message=f"{message} Reference {reference}.",
        )  # fmt: skip
        return Status.ERROR
    await _set_status(
        generation, Status.COMPLETE, outlet, finished_at=timezone.now(),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )  # fmt: skip
    return Status.COMPLETE


async def _append(generation: Generation, texts: dict[str, str], outlet: _Outlet) -> None:
    if texts:
        await generation.aappend(texts)
        await outlet.delta(texts)


async def _set_status(generation: Generation, status: str, outlet: _Outlet, **fields) -> None:
    await generation.aset_status(status, **fields)
    if generation.finished:
        FINISHED.labels(type(generation).__name__, status).inc()
    await outlet.change()
