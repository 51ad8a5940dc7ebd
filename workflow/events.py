"""The SSE events of a stage run: the page's own partials, swapped in out of band."""

from collections.abc import AsyncIterator

from django.conf import settings
from django.http import HttpRequest
from django.template.loader import render_to_string

from streaming import broker, sse
from workflow.models import StageRun

PAGE = "workflow/workspace.html"


def run_fragments(request: HttpRequest, run: StageRun) -> str:
    """Everything the page shows of a run, each piece replacing its old self."""
    context = {"run": run, "stage": run.stage, "case_id": run.case_id, "oob": True}
    return "".join(
        render_to_string(f"{PAGE}#{partial}", context, request)
        for partial in ("stepper-item", "reasoning-section", "summary-bubble")
    )


def delta_fragments(run: StageRun, texts: dict[str, str]) -> str:
    return render_to_string(f"{PAGE}#delta", {"run": run, "texts": texts})


async def stage_run_events(
    request: HttpRequest, run: StageRun, last_event_id: int | None
) -> AsyncIterator[str]:
    """Snapshot, deltas, status changes and done, each with its seq as the event id."""

    async def load() -> StageRun:
        return await StageRun.objects.aget(pk=run.pk)

    heartbeat = settings.STREAM_HEARTBEAT_INTERVAL
    async for item in broker.follow(run.group_name, load, heartbeat=heartbeat):
        if item is broker.HEARTBEAT:
            yield sse.comment("heartbeat")
        elif isinstance(item, broker.Live):
            if "texts" in item.message:
                data = delta_fragments(run, item.message["texts"])
                yield sse.encode(data, event="delta", id=item.seq)
            else:
                run = await load()
                yield sse.encode(
                    run_fragments(request, run),
                    event="done" if item.final else "stage",
                    id=item.seq,
                )
        else:
            run = item
            # After a reconnect with the last event id, the page already shows this state.
            if run.seq != last_event_id:
                yield sse.encode(run_fragments(request, run), event="snapshot", id=run.seq)
            if run.finished:
                yield sse.encode("", event="done", id=run.seq)
