"""The SSE event stream of a stage run, a group run or a chat reply.

Event ids are the followed object's seq; each event's data are fragments (`fragments`).
"""

import time
from collections.abc import AsyncIterator, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection, transaction
from django.http import HttpRequest

from streaming import broker, sse
from workflow import fragments, metrics
from workflow.fragments import Snapshot
from workflow.models import ChatMessage, StageRun, WorkflowRun

Load = Callable[[HttpRequest, int], Snapshot]


def _read(load: Load, request: HttpRequest, pk: int) -> Snapshot:
    """A snapshot read in one transaction that sees one moment (its text and its seq
    agree), then the connection goes back to the pool: a stream stays open as long as its
    page, and must not hold one of the pool's connections meanwhile."""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return load(request, pk)
    except ObjectDoesNotExist:  # deleted with its case while followed: nothing more comes
        return Snapshot(seq=0, finished=True, html="")
    finally:
        connection.close()


async def events(
    request: HttpRequest,
    followed: StageRun | WorkflowRun | ChatMessage,
    load: Load,
    last_event_id: int | None,
) -> AsyncIterator[str]:
    """Snapshot, deltas, status changes and done, each with its seq as the event id."""
    prefix = (ChatMessage if isinstance(followed, ChatMessage) else StageRun).stream_prefix

    async def snapshot() -> Snapshot:
        return await sync_to_async(_read)(load, request, followed.pk)

    async def state() -> broker.State:
        found = await type(followed).astate_of(followed.pk)
        return broker.State(*found) if found else broker.State(0, finished=True)  # deleted

    first = True
    deltas = fragments.Deltas()
    heartbeat = settings.STREAM_HEARTBEAT_INTERVAL
    follow = broker.follow(followed.stream_group, snapshot, heartbeat=heartbeat, load_state=state)
    async for item in follow:
        if item is broker.HEARTBEAT:
            yield sse.comment("heartbeat")
        elif isinstance(item, broker.Delta):
            html = deltas.html(prefix, item.id, item.texts)
            yield sse.encode(html, event="delta", id=item.seq)
            # Written to the page's stream; hosts' clocks may disagree by a little.
            metrics.DELIVERY_LAG.observe(max(0.0, time.time() - item.at))
        elif first:
            first = False
            deltas.follow(item)
            # After a reconnect with the last event id, the page already shows this state.
            if item.seq != last_event_id:
                yield sse.encode(item.html, event="snapshot", id=item.seq)
            if item.finished:
                yield sse.encode("", event="done", id=item.seq)
        else:
            deltas.follow(item)
            yield sse.encode(item.html, event="done" if item.finished else "stage", id=item.seq)
        del item  # sent: not kept while the stream waits for the next (see `broker.follow`)
