"""The SSE events of a stage run, a group run and a chat reply.

Every event carries the page's own partials with `hx-swap-oob`, so a snapshot and a page
load can never disagree. Event ids are the followed object's seq.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import contextmanager
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, transaction
from django.http import HttpRequest
from django.template.loader import render_to_string

from streaming import broker, sse
from workflow import leases, workspace
from workflow.models import ChatMessage, ClinicalCase, StageRun, WorkflowRun

PAGE = workspace.PAGE


@dataclass
class Snapshot:
    """The state of a followed object, read from Postgres, and its fragments."""

    seq: int
    finished: bool
    html: str


def _case_fragments(request: HttpRequest, case: ClinicalCase, finished: bool) -> str:
    """The stepper, and once the stream is over, the next thing for the page to follow."""
    context = workspace.stepper(case)
    partials = ["stepper"]
    if finished:
        context["stream_url"] = workspace.next_stream_url(case)
        partials.append("stream-host")
    return workspace.fragments(request, partials, context)


def _run_fragments(request: HttpRequest, run: StageRun) -> str:
    """A stage run in the ReasoningPanel (with its earlier runs) and in the chat."""
    context = {
        "section": workspace.section(run.case, run.stage_key),
        "run": run,
        "stage": run.stage,
    }
    return workspace.fragments(request, ["reasoning-section", "summary-bubble"], context)


def stage_run_snapshot(request: HttpRequest, run_id: int) -> Snapshot:
    run = StageRun.objects.select_related("case").get(pk=run_id)
    html = _run_fragments(request, run) + _case_fragments(request, run.case, run.finished)
    return Snapshot(run.seq, run.finished, html)


def workflow_run_snapshot(request: HttpRequest, workflow_id: int) -> Snapshot:
    workflow = WorkflowRun.objects.select_related("case").get(pk=workflow_id)
    runs = workflow.stage_runs.select_related("case").order_by("pk")
    html = "".join(_run_fragments(request, run) for run in runs)
    html += _case_fragments(request, workflow.case, workflow.finished)
    return Snapshot(workflow.stream_seq(), workflow.finished, html)


def chat_reply_snapshot(request: HttpRequest, message_id: int) -> Snapshot:
    message = ChatMessage.objects.select_related("case").get(pk=message_id)
    context = {"message": message, "case_id": message.case_id, "replying": not message.finished}
    html = workspace.fragments(request, ["chat-bubble", "chat-form"], context)
    if message.finished:
        next_url = workspace.next_stream_url(message.case)
        html += workspace.fragments(request, ["stream-host"], {"stream_url": next_url})
    return Snapshot(message.seq, message.finished, html)


@contextmanager
def _connection_released():
    """Back to the pool as soon as a read is done: a stream stays open as long as its page,
    and must not hold one of the pool's connections meanwhile."""
    try:
        yield
    finally:
        connection.close()


def _read(load: Callable[[HttpRequest, int], Snapshot], request, pk: int) -> Snapshot:
    """A snapshot read in one transaction that sees one moment: its text and its seq agree."""
    with _connection_released(), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        try:
            return load(request, pk)
        except ObjectDoesNotExist:  # deleted with its case while followed: nothing more comes
            return Snapshot(seq=0, finished=True, html="")


def _interrupt_abandoned(case_id: int) -> None:
    with _connection_released():
        leases.interrupt_abandoned(case_id)


async def events(
    request: HttpRequest,
    followed: StageRun | WorkflowRun | ChatMessage,
    load: Callable[[HttpRequest, int], Snapshot],
    last_event_id: int | None,
) -> AsyncIterator[str]:
    """Snapshot, deltas, status changes and done, each with its seq as the event id."""
    prefix = "chat-message" if isinstance(followed, ChatMessage) else "stage-run"

    async def snapshot() -> Snapshot:
        return await sync_to_async(_read)(load, request, followed.pk)

    first = True
    heartbeat = settings.STREAM_HEARTBEAT_INTERVAL
    async for item in broker.follow(followed.group_name, snapshot, heartbeat=heartbeat):
        if item is broker.HEARTBEAT:
            # Whoever watches notices a generation whose process died.
            await sync_to_async(_interrupt_abandoned)(followed.case_id)
            yield sse.comment("heartbeat")
        elif isinstance(item, broker.Delta):
            context = {"prefix": prefix, "id": item.id, "texts": item.texts}
            yield sse.encode(render_to_string(f"{PAGE}#delta", context), event="delta", id=item.seq)
        elif first:
            first = False
            # After a reconnect with the last event id, the page already shows this state.
            if item.seq != last_event_id:
                yield sse.encode(item.html, event="snapshot", id=item.seq)
            if item.finished:
                yield sse.encode("", event="done", id=item.seq)
        else:
            yield sse.encode(item.html, event="done" if item.finished else "stage", id=item.seq)
