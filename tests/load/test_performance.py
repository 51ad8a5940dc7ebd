"""Streaming performance under load, against a bare relay of the same load in the same run.

The server runs on one core (taskset); the simulator and this client share the other.
The simulator sends 30 tokens a second for 10 s per stream after 300 ms, and stamps each
token with the time it sent it (`<n>@<time>`), so each token's latency is measured where
the client receives it, and tokens lost or repeated on the live stream are counted (the
final re-render from Postgres is not looked at). The same load goes through a bare relay
(`tests/load/relay.py`): only ratios within one run mean anything on a noisy machine.

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

LEVELS = [int(n) for n in os.environ.get("BENCH_STREAMS", "10,50,100,200").split(",")]
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
}
STAMP = re.compile(r"(\d+)@(\d+\.\d+)")
SERVER_CORE, LOAD_CORE = "0", "1"


@dataclass
class Load:
    """What one kind of server did with a number of concurrent streams (losses and repeats
    counted over the streams that finished)."""

    streams: int
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # POST …/run, seconds
    lost: int = 0
    repeated: int = 0
    tokens: int = 0
    cpu_seconds: float = 0.0
    postgres_cpu_seconds: float = 0.0
    rss_kb_per_stream: float = 0.0
    gave_up: int = 0  # streams still open when the level gave up
    click_to_text: float | None = None  # seconds, in Chromium, while the level streams

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[q - 1] if self.latencies else 0.0


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
                load.latencies.extend(now - sent for _, sent in new)
                if event.event == "delta":
                    shown.extend(n for n, _ in stamps)
                elif stamps:
                    shown = [n for n, _ in stamps]
    return shown


def _not_in(shown: list[int], stamps: list[tuple[int, float]]) -> list[tuple[int, float]]:
    before = set(shown)
    return [(n, sent) for n, sent in stamps if n not in before]


async def _product_stream(http: httpx.AsyncClient, case_id: int, load: Load) -> list[int]:
    started = time.perf_counter()
    response = await http.post(f"/cases/{case_id}/stages/summary/run")
    load.starts.append(time.perf_counter() - started)
    response.raise_for_status()
    return await _read_stream(http, f"/cases/{case_id}/stages/summary/events", load)


async def _relay_stream(http: httpx.AsyncClient, _case_id: int, load: Load) -> list[int]:
    return await _read_stream(http, "/bench/relay", load)


def _count(load: Load, seen: list[int]) -> None:
    expected = set(range(1, TOKENS + 1))
    load.tokens += len(seen)
    load.lost += len(expected - set(seen))
    load.repeated += len(seen) - len(set(seen))


async def _run_level(
    base_url, cookies, headers, stream, case_ids, load, pid: int, click_case: int | None = None
) -> None:
    limits = httpx.Limits(max_connections=2 * len(case_ids) + 10)
    async with (
        httpx.AsyncClient(
            base_url=base_url, cookies=cookies, headers=headers, limits=limits, timeout=60
        ) as http,
        _clinician_page(base_url, cookies, click_case) as page,
    ):
        cpu, postgres = _cpu_seconds([pid]), _cpu_seconds(_postgres_pids())
        rss = _rss_kb(pid)
        tasks = [asyncio.ensure_future(stream(http, case_id, load)) for case_id in case_ids]
        await asyncio.sleep(TTFT + TOKENS / TOKENS_PER_SECOND / 2)
        load.rss_kb_per_stream = (_rss_kb(pid) - rss) / len(case_ids)
        if page is not None:
            load.click_to_text = await page.evaluate(CLICK_TO_FIRST_TEXT) / 1000
        done, pending = await asyncio.wait(tasks, timeout=GIVE_UP_AFTER)
        for task in pending:
            task.cancel()
        load.gave_up = len(pending)
        for task in done:
            _count(load, task.result())
        load.cpu_seconds = _cpu_seconds([pid]) - cpu
        load.postgres_cpu_seconds = _cpu_seconds(_postgres_pids()) - postgres


# Clicks Run and waits for the first reasoning text to show: milliseconds between them.
CLICK_TO_FIRST_TEXT = """async () => {
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
  return (await shown) - clicked;
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
            cases = [
                ClinicalCase.objects.create(owner=alice, chief_complaint=f"Load {streams}.{n}")
                for n in range(streams)
            ]
            ids = [case.pk for case in cases]
            click = ClinicalCase.objects.create(owner=alice, chief_complaint=f"Click {streams}")
            relay, product = Load(streams), Load(streams)
            level = partial(_run_level, url, cookies, headers, case_ids=ids, pid=server.pid)
            asyncio.run(level(stream=_relay_stream, load=relay))
            asyncio.run(level(stream=_product_stream, load=product, click_case=click.pk))
            _stop_what_still_runs(url, cookies, headers)
            results.append((relay, product))
    finally:
        stop_process(server)
        stop_process(simulator_process)
    if REPORT:
        _write_report(Path(REPORT), results)
    for relay, product in results:
        assert relay.lost == relay.repeated == 0, f"the relay lost tokens at {relay.streams}"
        assert product.repeated == 0, f"tokens repeated at {product.streams} streams"
        assert product.lost == 0, f"tokens lost at {product.streams} streams"


def _stop_what_still_runs(url: str, cookies: dict, headers: dict) -> None:
    with httpx.Client(base_url=url, cookies=cookies, headers=headers, timeout=30) as http:
        for run in StageRun.objects.active():
            http.post(f"/cases/{run.case_id}/stages/{run.stage_key}/cancel")
    wait_until(lambda: not StageRun.objects.active().exists(), 60, "stages still running")


HEADER = (
    "| streams | product latency p50 / p95 / p99 (ms) | bare relay p50 / p95 / p99 (ms) "
    "| app CPU per token, product (µs) | app CPU per token, relay (µs) "
    "| Postgres CPU per token (µs) | `POST …/run` p50 (ms) "
    "| memory per stream, product / relay (KB) | click → first text in Chromium (ms) "
    "| tokens lost / repeated |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def _cpu_per_token(load: Load) -> str:
    return f"{load.cpu_seconds / load.tokens * 1e6:,.0f}" if load.tokens else "—"


def _postgres_per_token(load: Load) -> str:
    return f"{load.postgres_cpu_seconds / load.tokens * 1e6:,.0f}" if load.tokens else "—"


def _write_report(path: Path, results: list[tuple[Load, Load]]) -> None:
    rows = []
    for relay, product in results:
        latency = " / ".join(_ms(product.percentile(q)) for q in (50, 95, 99))
        relay_latency = " / ".join(_ms(relay.percentile(q)) for q in (50, 95, 99))
        start = _ms(statistics.median(product.starts)) if product.starts else "—"
        note = f" ({product.gave_up} still streaming after 90 s)" if product.gave_up else ""
        rows.append(
            f"| {product.streams} | {latency}{note} | {relay_latency} | "
            f"{_cpu_per_token(product)} | {_cpu_per_token(relay)} | "
            f"{_postgres_per_token(product)} | {start} | "
            f"{product.rss_kb_per_stream:,.0f} / {relay.rss_kb_per_stream:,.0f} | "
            f"{_ms(product.click_to_text) if product.click_to_text is not None else '—'} | "
            f"{product.lost} / {product.repeated} |"
        )
    table = "\n".join(rows)
    path.write_text(
        f"""# Streaming performance

Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

The server ran on one core; the LLM simulator and the load shared the other. Each
stream: {TOKENS} tokens at {TOKENS_PER_SECOND} tokens/s after {TTFT * 1000:.0f} ms, each \
stamped with the time the simulator sent it.
Latency: token sent by the provider → shown by the client (a delta, or a full-state
event), on the live stream. The bare relay is one async Django view under the same
Daphne relaying the `openai` SDK stream as SSE, with no database: the floor for this load.
Only ratios within one run mean anything on this shared machine: the tail latencies at
100 streams and more vary severalfold between runs of the same code (p95 at 100 streams
from 0.65 to 2.5 s), mostly from the burst of 100 stages started in the same second.
Postgres CPU covers every Postgres process on the machine. Memory per stream: the
server's growth halfway through the level, the relay's level first. Click → first text:
a clinician's click on Run in Debian's Chromium, while the level streams, to the first
reasoning text on the page (the provider takes {TTFT * 1000:.0f} ms to its first token).

{HEADER}
{table}

![Token latency against concurrent streams, product beside the bare relay]({path.stem}.svg)
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


def _plot(results: list[tuple[Load, Load]]) -> str:
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
    for index, (relay, _) in enumerate(results):
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
