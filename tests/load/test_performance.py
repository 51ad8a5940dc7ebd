"""Streaming performance under load, against a bare relay of the same load in the same run.

The server runs on one core (taskset); the simulator and this client share the other.
The simulator sends 30 tokens a second for 10 s per stream after 300 ms, and stamps each
token with the time it sent it (`<n>@<time>`), so each token's latency is measured where
the client receives it, and tokens lost or repeated on the live stream are counted (the
final re-render from Postgres is not looked at). The same load goes through a bare relay
(`tests/load/relay.py`): only ratios within one run mean anything on a noisy machine.
Each level runs twice: with clinicians arriving one after another and N streams open at
once (the table the goals are about), and with all N clicking Run in the same second.

`make bench` runs it and writes docs/performance.md; `make test` leaves it out.
"""

import asyncio
import math
import os
import re
import shutil
import statistics
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from streaming.sse import Parser
from tests.browser.conftest import CHROMIUM_FLAGS
from tests.conftest import log_in, start_server, start_simulator, stop_process, wait_until
from workflow.models import ClinicalCase, StageRun

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

LEVELS = [int(n) for n in os.environ.get("BENCH_STREAMS", "10,30,50,100,200").split(",")]
REPORT = os.environ.get("PERFORMANCE_REPORT")
TTFT, TOKENS_PER_SECOND, TOKENS = 0.3, 30, 300
GIVE_UP_AFTER = 90  # seconds for one load level: a collapse is reported, not waited out
# The defaults a deployment runs with, not the suite's short ones.
PRODUCTION_LIMITS = {
    "LEASE_SECONDS": "15",
    "STREAM_HEARTBEAT_INTERVAL": "10",
    "LLM_FIRST_TOKEN_TIMEOUT": "60",
    "LLM_IDLE_TIMEOUT": "30",
    "LLM_BACKOFF": "1",
    # One test clinician plays every clinician of the load: lift her own quotas.
    "MAX_ACTIVE_GENERATIONS": "100000",
    "DAILY_TOKEN_BUDGET": str(10**12),
}
STAMP = re.compile(r"(\d+)@(\d+\.\d+)")
SERVER_CORE, LOAD_CORE = "0", "1"


STREAM_SECONDS = TTFT + TOKENS / TOKENS_PER_SECOND


@dataclass
class Load:
    """What one kind of server did with a number of concurrent streams. Latencies, starts,
    CPU and tokens count within the measured window; losses and repeats over every stream
    that finished."""

    streams: int
    window: tuple[float, float] = (0.0, math.inf)  # wall-clock times, as the stamps are
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # POST …/run, seconds
    lost: int = 0
    repeated: int = 0
    tokens: int = 0  # delivered within the window
    cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    rss_kb_per_stream: float = 0.0
    gave_up: int = 0  # streams still open when the level gave up
    click_to_text: float | None = None  # seconds, in Chromium, while the level streams
    click_to_sent: float | None = None  # seconds until the provider sent that text
    stop_to_stopped: float | None = None  # seconds from Stop to the stage shown stopped

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[q - 1] if self.latencies else 0.0

    def within(self, moment: float) -> bool:
        return self.window[0] <= moment < self.window[1]


async def _read_stream(http: httpx.AsyncClient, url: str, load: Load) -> list[int]:
    """The token numbers the page shows just before `done`, as it builds them: deltas
    append, a full-state event (snapshot, stage) replaces. Each token's latency is taken
    when it first shows, however it came; `done`'s re-render from Postgres is not counted,
    so a gap or a repeat on the live stream shows."""
    shown: list[int] = []
    parser = Parser()
    async with http.stream("GET", url) as response:
        async for text in response.aiter_text():
            now = time.time()
            for event in parser.feed(text):
                if event.event == "done":
                    return shown
                stamps = [(int(n), float(sent)) for n, sent in STAMP.findall(event.data)]
                new = stamps if event.event == "delta" else _not_in(shown, stamps)
                load.latencies.extend(now - sent for _, sent in new if load.within(sent))
                load.tokens += len(new) if load.within(now) else 0
                if event.event == "delta":
                    shown.extend(n for n, _ in stamps)
                elif stamps:
                    shown = [n for n, _ in stamps]
    return shown


def _not_in(shown: list[int], stamps: list[tuple[int, float]]) -> list[tuple[int, float]]:
    before = set(shown)
    return [(n, sent) for n, sent in stamps if n not in before]


async def _product_stream(http: httpx.AsyncClient, case_id: int, load: Load) -> list[int]:
    clicked, started = time.time(), time.perf_counter()
    response = await http.post(f"/cases/{case_id}/stages/summary/run")
    if load.within(clicked):
        load.starts.append(time.perf_counter() - started)
    response.raise_for_status()
    return await _read_stream(http, f"/cases/{case_id}/stages/summary/events", load)


async def _relay_stream(http: httpx.AsyncClient, _case_id: int, load: Load) -> list[int]:
    return await _read_stream(http, "/bench/relay", load)


def _count(load: Load, seen: list[int]) -> None:
    expected = set(range(1, TOKENS + 1))
    load.lost += len(expected - set(seen))
    load.repeated += len(seen) - len(set(seen))


async def _spread(stream, http, case_ids, load: Load, measure) -> int:
    """Clinicians arriving one after another: N streams started evenly over a stream's
    length, each followed by a new one (another case) when it ends, so N are open at once
    through the measured window (the second stream length); returns the streams still
    open when it gave up. Takes 3 cases per clinician."""
    begin = time.time()
    load.window = (begin + STREAM_SECONDS, begin + 2 * STREAM_SECONDS)
    clinicians = len(case_ids) // 3

    async def clinician(index: int) -> None:
        await asyncio.sleep(index * STREAM_SECONDS / clinicians)
        for case_id in case_ids[index::clinicians]:
            if time.time() >= load.window[1]:
                return
            _count(load, await stream(http, case_id, load))

    tasks = [asyncio.ensure_future(clinician(n)) for n in range(clinicians)]
    await asyncio.sleep(load.window[0] - time.time())
    await measure(load.window[1])
    return await _wait_out(tasks)


async def _together(stream, http, case_ids, load: Load, measure) -> int:
    """Every clinician clicking in the same second: the worst burst of starts."""

    async def clinician(case_id: int) -> None:
        _count(load, await stream(http, case_id, load))

    tasks = [asyncio.ensure_future(clinician(case)) for case in case_ids]
    await measure(time.time() + STREAM_SECONDS)
    return await _wait_out(tasks)


async def _wait_out(tasks) -> int:
    done, pending = await asyncio.wait(tasks, timeout=GIVE_UP_AFTER)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()
    return len(pending)


async def _run_level(
    base_url, cookies, headers, arrive, stream, case_ids, load, click_case=None, *, streams, pid
) -> None:
    limits = httpx.Limits(max_connections=2 * streams + 10)
    async with (
        httpx.AsyncClient(
            base_url=base_url, cookies=cookies, headers=headers, limits=limits, timeout=60
        ) as http,
        _clinician_page(base_url, cookies, click_case) as page,
    ):
        rss = _rss_kb(pid)

        async def measure(until: float) -> None:
            """CPU over the window and memory halfway through it, then a clinician's click
            while the streams are still open (its stream's CPU is not the load's)."""
            cpu, postgres = _cpu_seconds([pid]), _cpu_seconds(_postgres_pids())
            await asyncio.sleep(max(0.0, (until - time.time()) / 2))
            load.rss_kb_per_stream = (_rss_kb(pid) - rss) / streams
            await asyncio.sleep(max(0.0, until - time.time()))
            load.cpu_seconds = _cpu_seconds([pid]) - cpu
            load.postgres_cpu_seconds = _cpu_seconds(_postgres_pids()) - postgres
            if page is not None:
                shown, sent, stopped = await page.evaluate(CLICK_TO_FIRST_TEXT_THEN_STOP)
                load.click_to_text, load.click_to_sent = shown / 1000, sent / 1000
                load.stop_to_stopped = stopped / 1000

        load.gave_up = await arrive(stream, http, case_ids, load, measure)


# Clicks Run and waits for the first reasoning text to show: milliseconds from the click
# to then, and to when the provider sent that text (its stamp, on the same clock); then
# clicks Stop: milliseconds until the stepper shows the stage stopped.
CLICK_TO_FIRST_TEXT_THEN_STOP = """async () => {
  const shown = new Promise((resolve) => {
    new MutationObserver((_, observer) => {
      const text = document.querySelector(".stream-text[data-reasoning=summary]");
      if (text && text.textContent.trim()) {
        observer.disconnect();
        resolve(performance.now());
      }
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  const clicked = performance.now();
  document.querySelector("[data-action=run-stage][data-stage-key=summary]").click();
  const at = await shown;
  await new Promise((resolve) => setTimeout(resolve, 300));  // its first token spelled out
  const text = document.querySelector(".stream-text[data-reasoning=summary]").textContent;
  const sent = parseFloat(text.match(/\\d+@(\\d+\\.\\d+)/)[1]) * 1000;
  const step = "li[data-stage-key=summary]";
  const stopped = new Promise((resolve) => {
    new MutationObserver((_, observer) => {
      if (document.querySelector(step).dataset.status === "cancelled") {
        observer.disconnect();
        resolve(performance.now());
      }
    }).observe(document.body, { attributes: true, childList: true, subtree: true });
  });
  const stopping = performance.now();
  document.querySelector("[data-action=cancel][data-stage-key=summary]").click();
  return [at - clicked, sent - (performance.timeOrigin + clicked), (await stopped) - stopping];
}"""


@asynccontextmanager
async def _clinician_page(base_url: str, cookies: dict, case_id: int | None):
    """A clinician's page of this case in Debian's Chromium, opened before the load starts
    (None without a case or without Chromium)."""
    executable = shutil.which("chromium")
    if case_id is None or executable is None:
        yield None
        return
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        context = await browser.new_context(base_url=base_url)
        await context.add_cookies(
            [{"name": name, "value": value, "url": base_url} for name, value in cookies.items()]
        )
        page = await context.new_page()
        await page.goto(f"/cases/{case_id}/")
        yield page
        await browser.close()


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_streaming_latency_against_a_bare_relay(alice, tmp_path):
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    simulator, simulator_process = start_simulator(cores=LOAD_CORE)
    env = {"DJANGO_SETTINGS_MODULE": "tests.load.bench_settings", **PRODUCTION_LIMITS}
    url, server = start_server(simulator, tmp_path / "daphne.log", cores=SERVER_CORE, **env)
    try:
        simulator.configure(ttft=TTFT, tps=TOKENS_PER_SECOND, words=TOKENS, stamp=True)
        with httpx.Client(base_url=url, timeout=30) as http:
            log_in(http, alice)
            cookies, headers = dict(http.cookies), {**http.headers, "HX-Request": "true"}
        results = []
        for streams in LEVELS:
            ids = _new_cases(alice, 4 * streams)  # never a re-run: each stream a case of its own
            click = ClinicalCase.objects.create(owner=alice, chief_complaint=f"Click {streams}")
            relay, product = Load(streams), Load(streams)
            burst_relay, burst = Load(streams), Load(streams)
            level = partial(_run_level, url, cookies, headers, streams=streams, pid=server.pid)
            asyncio.run(level(_spread, _relay_stream, ids[streams:], relay))
            asyncio.run(level(_spread, _product_stream, ids[streams:], product, click.pk))
            _stop_what_still_runs(url, cookies, headers)
            asyncio.run(level(_together, _relay_stream, ids[:streams], burst_relay))
            asyncio.run(level(_together, _product_stream, ids[:streams], burst))
            _stop_what_still_runs(url, cookies, headers)
            results.append((relay, product, burst_relay, burst))
    finally:
        stop_process(server)
        stop_process(simulator_process)
    if REPORT:
        _write_report(Path(REPORT), results)
    for loads in results:
        for load in loads:
            assert load.repeated == 0, f"tokens repeated at {load.streams} streams"
            assert load.lost == 0, f"tokens lost at {load.streams} streams"


def _new_cases(owner, count: int) -> list[int]:
    cases = ClinicalCase.objects.bulk_create(
        ClinicalCase(owner=owner, chief_complaint=f"Load {n}") for n in range(count)
    )
    return [case.pk for case in cases]


def _stop_what_still_runs(url: str, cookies: dict, headers: dict) -> None:
    with httpx.Client(base_url=url, cookies=cookies, headers=headers, timeout=30) as http:
        for run in StageRun.objects.active():
            http.post(f"/cases/{run.case_id}/stages/{run.stage_key}/cancel")
    wait_until(lambda: not StageRun.objects.active().exists(), 60, "stages still running")


HEADER = (
    "| streams | product latency p50 / p95 / p99 (ms) | bare relay p50 / p95 / p99 (ms) "
    "| app CPU per token, product / relay (µs) | server core busy, product / relay "
    "| Postgres CPU per token (µs) | `POST …/run` p50 (ms) "
    "| memory per stream, product / relay (KB) "
    "| click → first text in Chromium (→ the provider sent it) (ms) "
    "| Stop → shown stopped (ms) | tokens lost / repeated |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def _cpu_per_token(load: Load) -> str:
    return f"{load.cpu_seconds / load.tokens * 1e6:,.0f}" if load.tokens else "—"


def _core_busy(load: Load) -> str:
    """The share of the server's one core the app used over the window: past about 90 %,
    tokens queue behind each other, whatever the code."""
    return f"{load.cpu_seconds / (load.window[1] - load.window[0]):.0%}" if load.tokens else "—"


def _postgres_per_token(load: Load) -> str:
    return f"{load.postgres_cpu_seconds / load.tokens * 1e6:,.0f}" if load.tokens else "—"


BURST_HEADER = (
    "| streams | product latency p50 / p99 (ms) | bare relay p50 / p99 (ms) "
    "| `POST …/run` p50 / p95 (ms) | tokens lost / repeated |\n"
    "|---|---|---|---|---|"
)


def _latency(load: Load, quantiles=(50, 95, 99)) -> str:
    return " / ".join(_ms(load.percentile(q)) for q in quantiles)


def _starts(load: Load) -> str:
    if len(load.starts) < 2:
        return "—"
    ranked = statistics.quantiles(load.starts, n=100)
    return f"{_ms(ranked[49])} / {_ms(ranked[94])}"


def _click(load: Load) -> str:
    if load.click_to_text is None or load.click_to_sent is None:
        return "—"
    return f"{_ms(load.click_to_text)} ({_ms(load.click_to_sent)})"


def _stop(load: Load) -> str:
    return "—" if load.stop_to_stopped is None else _ms(load.stop_to_stopped)


def _gave_up(load: Load) -> str:
    return f" ({load.gave_up} still streaming after 90 s)" if load.gave_up else ""


def _write_report(path: Path, results: list[tuple[Load, Load, Load, Load]]) -> None:
    rows, burst_rows = [], []
    for relay, product, burst_relay, burst in results:
        start = _ms(statistics.median(product.starts)) if product.starts else "—"
        rows.append(
            f"| {product.streams} | {_latency(product)}{_gave_up(product)} | {_latency(relay)} | "
            f"{_cpu_per_token(product)} / {_cpu_per_token(relay)} | "
            f"{_core_busy(product)} / {_core_busy(relay)} | "
            f"{_postgres_per_token(product)} | {start} | "
            f"{product.rss_kb_per_stream:,.0f} / {relay.rss_kb_per_stream:,.0f} | "
            f"{_click(product)} | {_stop(product)} | "
            f"{product.lost} / {product.repeated} |"
        )
        burst_rows.append(
            f"| {burst.streams} | {_latency(burst, (50, 99))}{_gave_up(burst)} | "
            f"{_latency(burst_relay, (50, 99))} | {_starts(burst)} | "
            f"{burst.lost} / {burst.repeated} |"
        )
    table, burst_table = "\n".join(rows), "\n".join(burst_rows)
    path.write_text(
        f"""# Streaming performance

Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

The server ran on one core; the LLM simulator and the load shared the other. Each
stream: {TOKENS} tokens at {TOKENS_PER_SECOND} tokens/s after {TTFT * 1000:.0f} ms \
({STREAM_SECONDS:.1f} s), each stamped with the time the simulator sent it.
Latency: token sent by the provider → shown by the client (a delta, or a full-state
event), on the live stream. The bare relay is one async Django view under the same
Daphne relaying the `openai` SDK stream as SSE, with no database: the floor for this load.
Only ratios within one run mean anything on this shared machine.

**As a hospital's load arrives.** N clinicians start a stage one after another, evenly
over one stream's length, and each starts it again when it ends, so N streams are open
at once (one test account plays them all, its per-clinician quotas lifted). Everything
but losses is measured over the second stream length, when all N are open: token
latency, each `POST …/run` made then, app and Postgres CPU per token delivered then
(Postgres CPU covers every Postgres process on the machine), the share of its one core the
server was busy then (near 100 %, tokens wait for the core whatever the code does: the
relay's share shows how much of the core this machine leaves), memory per stream halfway
through (the server's growth since the level began; the relay's level
ran first). Right after that window, with the N streams still open, a clinician clicks
Run in Debian's Chromium: click → first reasoning text on the page. In brackets: when,
after the click, the provider sent that text. Its first token is the answer's opening
tag, {TTFT * 1000:.0f} ms after the request; the first text comes one token later, so \
{(TTFT + 1 / TOKENS_PER_SECOND) * 1000:.0f} ms after the click is the floor.
Then the clinician clicks Stop: Stop → the stage shown stopped (the browser tests check
that no text arrives after it).

A 20,000-word stage in Chromium: [performance-long-stage.md](performance-long-stage.md).

{HEADER}
{table}

![Token latency against concurrent streams, product beside the bare relay]({path.stem}.svg)

**All at once.** The worst burst: all N clinicians click Run in the same second, once.
Starting and ending a stage costs the server tens of milliseconds of CPU (two requests,
two snapshots, the runner's setup and ending), so N starts queue on its one core and the first
tokens of every stream wait behind them.

{BURST_HEADER}
{burst_table}
"""
    )
    path.with_suffix(".svg").write_text(_plot(results))


PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 640, 400, 60
LINES = [  # (label, which load, percentile, colour, dash)
    ("product p50", 1, 50, "#b03a2e", ""),
    ("product p99", 1, 99, "#b03a2e", "6 4"),
    ("bare relay p50", 0, 50, "#1f618d", ""),
    ("bare relay p99", 0, 99, "#1f618d", "6 4"),
]


def _plot(results: list[tuple[Load, Load, Load, Load]]) -> str:
    """Latency (log scale) against concurrent streams, as SVG."""
    low, high = 1, 100_000  # ms
    inner_w, inner_h = PLOT_WIDTH - 2 * MARGIN, PLOT_HEIGHT - 2 * MARGIN

    def x(index: int) -> float:
        return MARGIN + inner_w * (index + 0.5) / len(results)

    def y(ms: float) -> float:
        share = (math.log10(max(ms, low)) - math.log10(low)) / math.log10(high / low)
        return MARGIN + inner_h * (1 - share)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{PLOT_WIDTH / 2}" y="20" text-anchor="middle">Token latency (ms, log scale)'
        " against concurrent streams, server on one core</text>",
    ]
    for ms in (1, 10, 100, 1_000, 10_000, 100_000):
        parts.append(
            f'<line x1="{MARGIN}" x2="{PLOT_WIDTH - MARGIN}" y1="{y(ms)}" y2="{y(ms)}" '
            'stroke="#ddd"/>'
            f'<text x="{MARGIN - 6}" y="{y(ms) + 4}" text-anchor="end">{ms:,}</text>'
        )
    for index, (relay, *_) in enumerate(results):
        parts.append(
            f'<text x="{x(index)}" y="{PLOT_HEIGHT - MARGIN + 18}" text-anchor="middle">'
            f"{relay.streams}</text>"
        )
    parts.append(
        f'<text x="{PLOT_WIDTH / 2}" y="{PLOT_HEIGHT - MARGIN + 36}" text-anchor="middle">'
        "concurrent streams</text>"
    )
    for n, (label, which, q, colour, dash) in enumerate(LINES):
        points = " ".join(
            f"{x(i)},{y(loads[which].percentile(q) * 1000)}" for i, loads in enumerate(results)
        )
        stroke = f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"'
        key_x, key_y = MARGIN + 130 * n, PLOT_HEIGHT - 14
        parts.append(
            f'<polyline points="{points}" fill="none" {stroke}/>'
            f'<line x1="{key_x}" x2="{key_x + 24}" y1="{key_y}" y2="{key_y}" {stroke}/>'
            f'<text x="{key_x + 30}" y="{key_y + 4}" fill="{colour}">{label}</text>'
        )
    return "\n".join([*parts, "</svg>"]) + "\n"
