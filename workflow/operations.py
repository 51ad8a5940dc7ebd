"""What the staff's Operations page shows: the last 24 hours from the runs in Postgres
(they outlive processes, and every host writes them), and this host's live gauges."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from django.db.models import Q
from django.utils import timezone
from django.utils.safestring import SafeString

from workflow import charts, metrics
from workflow.charts import Bar
from workflow.models import ChatMessage, Generation, StageRun, Status

HOURS = 24
TIME_TO_FIRST_TOKEN_EDGES = (0.5, 1, 2, 4, 8, 15, 30)  # seconds
STAGE_DURATION_EDGES = (5, 10, 20, 30, 60, 120, 300)
FAILED = (Status.ERROR, Status.INTERRUPTED)
REFERENCE = re.compile(r"\(Reference (\w+)\.\)")


@dataclass(frozen=True)
class Failure:
    finished_at: datetime
    what: str
    case_id: int
    status: str
    code: str
    reference: str


@dataclass(frozen=True)
class Overview:
    time_to_first_token: SafeString
    stage_duration: SafeString
    error_rate: SafeString
    open_streams: int
    running: int
    failures: list[Failure]


def overview(now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    since = now - timedelta(hours=HOURS)
    recent = Q(finished_at__gte=since, finished_at__lte=now)
    fields = ("started_at", "first_token_at", "finished_at", "status", "mode")
    runs = list(StageRun.objects.filter(recent).values_list(*fields))
    replies = list(ChatMessage.objects.filter(recent).values_list(*fields))
    # In batch mode the first token comes with the last: only streamed ones say anything.
    waits = [
        (first - start).total_seconds()
        for start, first, _, _, mode in runs + replies
        if start and first and mode == "stream"
    ]
    durations = [(end - start).total_seconds() for start, _, end, *_ in runs if start]
    ended = [(end, status) for _, _, end, status, _ in runs + replies]
    return Overview(
        time_to_first_token=charts.bars(
            "Time to the first token, last 24 hours (streamed generations)",
            histogram(waits, TIME_TO_FIRST_TOKEN_EDGES),
        ),
        stage_duration=charts.bars(
            "Stage duration, last 24 hours (stage runs)",
            histogram(durations, STAGE_DURATION_EDGES),
        ),
        error_rate=charts.bars(
            "Share of generations ending in error or interrupted, by hour",
            error_rate_by_hour(ended, now),
            width=2 * charts.WIDTH,
            label_every=2,
            scale=1,
        ),
        open_streams=int(metrics.current("medhastra_open_event_streams")),
        running=sum(
            model.objects.filter(status=Status.RUNNING).count() for model in (StageRun, ChatMessage)
        ),
        failures=latest_failures(),
    )


def histogram(values: list[float], edges: tuple[float, ...]) -> list[Bar]:
    """How many values fall under each edge (and over the last), as bars."""
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[sum(value >= edge for edge in edges)] += 1
    labels = [f"< {edges[0]:g} s"]
    labels += [f"{low:g} to {high:g} s" for low, high in pairwise(edges)]
    labels.append(f"≥ {edges[-1]:g} s")
    return [Bar(label, count, str(count)) for label, count in zip(labels, counts, strict=True)]


def error_rate_by_hour(ended: list[tuple[datetime, str]], now: datetime) -> list[Bar]:
    """Per hour of the last HOURS (oldest first): the share of generations that ended in
    error or interrupted, of all that ended in that hour."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    totals, failed = [0] * HOURS, [0] * HOURS
    for finished_at, status in ended:
        hour = int((finished_at - start).total_seconds() // 3600)
        if 0 <= hour < HOURS:
            totals[hour] += 1
            failed[hour] += status in FAILED
    bars = []
    for hour in range(HOURS):
        label = f"{(start + timedelta(hours=hour)):%H}:00"
        rate = failed[hour] / totals[hour] if totals[hour] else 0
        shown = f"{rate:.0%} of {totals[hour]}" if totals[hour] else "none ended"
        bars.append(Bar(label, rate, shown))
    return bars


def latest_failures(count: int = 20) -> list[Failure]:
    """The newest generations that ended in error or interrupted, with their reference."""
    shown = ("finished_at", "case_id", "status", "error_code", "error_message")
    failed = [
        StageRun.objects.only("stage_key", *shown),
        ChatMessage.objects.only(*shown),
    ]
    found: list[Generation] = [
        generation
        for generations in failed
        for generation in generations.filter(status__in=FAILED).order_by("-finished_at")[:count]
    ]
    found.sort(key=lambda g: g.finished_at or timezone.now(), reverse=True)
    return [
        Failure(
            finished_at=g.finished_at,
            what=g.stage.title if isinstance(g, StageRun) else "Chat reply",
            case_id=g.case_id,
            status=g.get_status_display(),
            code=g.error_code,
            reference=match[1] if (match := REFERENCE.search(g.error_message)) else "",
        )
        for g in found[:count]
    ]
