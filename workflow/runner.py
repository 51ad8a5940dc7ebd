"""The runner: executes a stage run on the server's event loop, apart from any request.

Each flush of generated text is persisted before it is published, so a follower that
reads Postgres never misses what a live event carried.
"""

import asyncio
import contextvars
import logging
import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter

from streaming import broker
from streaming.router import Coalescer, ContentRouter
from workflow.llm import LLMRequest, Usage, get_engine
from workflow.llm.errors import describe
from workflow.models import StageRun
from workflow.stages import stage_messages, summarising_messages

logger = logging.getLogger(__name__)

FINISHED_RUNS = Counter("medhastra_stage_runs_total", "Stage runs finished.", ["status"])

# The event loop keeps only weak references to tasks: these keep running runs alive.
_running: set[asyncio.Task] = set()


def start(stage_run: StageRun) -> None:
    """Run the stage in the background; it outlives the request that started it."""
    # A fresh context: the request's context carries its own thread for sync code,
    # which Django closes when the response is sent.
    task = asyncio.get_running_loop().create_task(
        run_stage(stage_run.pk), context=contextvars.Context()
    )
    _running.add(task)
    task.add_done_callback(_running.discard)


async def run_stage(stage_run_id: int) -> None:
    run = await StageRun.objects.select_related("case").aget(pk=stage_run_id)
    engine = get_engine()
    facts = run.case.facts()
    earlier = await sync_to_async(run.case.earlier_summaries)(run.stage)
    request = LLMRequest(stage_messages(run.stage, facts, earlier), run.stage_key, facts)
    await _set_status(run, StageRun.Status.RUNNING, started_at=timezone.now(), engine=engine.label)
    coalescer = Coalescer(settings.STREAM_FLUSH_INTERVAL)
    usage: Usage | None = None
    try:
        router = ContentRouter()
        async for delta in engine.stream(request):
            coalescer.add(router.feed(delta.reasoning, thinking=True))
            coalescer.add(router.feed(delta.content))
            usage = delta.usage or usage
            if coalescer.due():
                await _append(run, coalescer.take())
        coalescer.add(router.close())
        await _append(run, coalescer.take())
        if not run.summary.strip():
            ask = LLMRequest(summarising_messages(run.stage, run.reasoning), run.stage_key, facts)
            await _append(run, {"summary": await engine.complete(ask)})
    except Exception as exc:
        reference = uuid.uuid4().hex[:8]
        code, message = describe(exc)
        logger.exception("Stage run %s failed: %s (reference %s)", run.pk, code, reference)
        await _append(run, coalescer.take())
        await _set_status(
            run,
            StageRun.Status.ERROR,
            finished_at=timezone.now(),
            error_code=code,
            error_message=f"{message} Reference {reference}.",
        )
        return
    await _set_status(
        run,
        StageRun.Status.COMPLETE,
        finished_at=timezone.now(),
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )


async def _append(run: StageRun, texts: dict[str, str]) -> None:
    if texts:
        seq = await run.aappend(texts)
        await broker.publish(run.group_name, {"seq": seq, "texts": texts})


async def _set_status(run: StageRun, status: str, **fields) -> None:
    seq = await run.aset_status(status, **fields)
    if run.finished:
        FINISHED_RUNS.labels(status).inc()
    await broker.publish(run.group_name, {"seq": seq, "status": status, "final": run.finished})
