"""What the app tells Prometheus at /metrics (names in docs/architecture.md).

With PROMETHEUS_MULTIPROC_DIR set in the environment of every server process (a
directory they share, under /run: empty at boot, kept across deploys), each process
writes its values there and /metrics answers for the whole host: counters over every
process since boot, gauges over the live ones; unset, for its own.
"""

import os
import re
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
LIVE_FILE = re.compile(r"_(\d+)\.db$")

TIME_TO_FIRST_TOKEN = Histogram(
    "medhastra_time_to_first_token_seconds",
    "From a generation's start to the provider's first token, retries included.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
TOKEN_GAP = Histogram(
    "medhastra_token_gap_seconds",
    "Between two pieces of a streamed answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERY_LAG = Histogram(
    "medhastra_delivery_lag_seconds",
    "From a flush of text persisted (and published) to its event written to a page.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STAGE_DURATION = Histogram(
    "medhastra_stage_duration_seconds",
    "A stage run's generation, from start to end, however it ended.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
GENERATIONS = Counter(
    "medhastra_generations_total",
    "Generations ended, by kind (stage or reply), stage and final status.",
    ["kind", "stage", "status"],
)
PROVIDER_RETRIES = Counter(
    "medhastra_provider_retries_total", "Provider attempts retried, by error code.", ["code"]
)
PROVIDER_ERRORS = Counter(
    "medhastra_provider_errors_total",
    "Generations that ended in error because of the provider, by error code.",
    ["code"],
)
STREAM_RESUMES = Counter(
    "medhastra_stream_resumes_total", "Event streams reopened with a Last-Event-ID."
)
FALLBACKS = Counter(
    "medhastra_fallbacks_total",
    "Fallbacks: a page polling for want of a live stream, a generation made in one batch.",
    ["kind"],
)
# Series that exist from zero: Prometheus's increase() misses the first count of a series
# that appears with it (the first fallback would not fire the alert).
FALLBACKS.labels("polling")
FALLBACKS.labels("batch")
RUNNING = Gauge(
    "medhastra_running_generations",
    "Generations this host is generating now.",
    multiprocess_mode="livesum",
)


def _registry() -> CollectorRegistry:
    """The host's live processes, or this one."""
    if not MULTIPROCESS:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest(_registry())


def current(gauge: str) -> float:
    """A gauge's value now, e.g. "medhastra_open_event_streams"."""
    return sum(
        sample.value
        for family in _registry().collect()
        if family.name == gauge
        for sample in family.samples
    )


def process_ended() -> None:
    """This process stops: its gauges no longer count (its counters stay in the sums)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())


def forget_dead_processes() -> None:
    """The gauges of processes that died without a word (killed, out of memory) leave the
    sums, as those of a process that stopped (their counters stay)."""
    if not MULTIPROCESS:
        return
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    pids = {
        int(found[1])
        for file in directory.glob("gauge_live*.db")
        if (found := LIVE_FILE.search(file.name))
    }
    for pid in pids - {os.getpid()}:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
