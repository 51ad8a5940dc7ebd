"""A 20,000-word stage streams in Chromium without freezing the page.

The simulator writes it fast (2,000 tokens a second, with `LLM_MAX_TOKENS` raised to let
it), once as Markdown sections and once as a single paragraph, the case where no block is
ever finished while it streams. The page measures its own main thread: its longest task
and the longest wait between two frames it painted, from the click to the stage shown
complete. `make bench` runs it and writes docs/performance-long-stage.md.
"""

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM_FLAGS
from tests.conftest import installed, log_in, start_server, start_simulator, stop_process
from workflow.models import ClinicalCase

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

REPORT = os.environ.get("PERFORMANCE_REPORT")
WORDS, TOKENS_PER_SECOND = 20_000, 2_000
SERVER_CORE, LOAD_CORE = "0", "1"

# The page's own record of its main thread: long tasks, and the time between frames.
WATCH_THE_MAIN_THREAD = """() => {
  window.bench = { tasks: [], gaps: [], watching: true };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) { window.bench.tasks.push(entry.duration); }
  }).observe({ type: "longtask" });
  let last = performance.now();
  requestAnimationFrame(function frame(now) {
    window.bench.gaps.push(now - last);
    last = now;
    if (window.bench.watching) { requestAnimationFrame(frame); }
  });
}"""


@dataclass
class LongStage:
    shape: str
    seconds: float  # click → the stage shown complete
    words: int  # shown at the end
    longest_task_ms: float
    long_tasks_ms: float  # the time spent in tasks over 50 ms, in all
    longest_gap_ms: float  # between two frames
    slow_frames: int  # gaps over 100 ms


def test_a_20000_word_stage_streams_without_freezing_the_page(alice, tmp_path):
    chromium = installed("chromium", "chromium")
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    simulator, simulator_process = start_simulator(cores=LOAD_CORE)
    env = {"DJANGO_SETTINGS_MODULE": "tests.load.bench_settings", "LLM_MAX_TOKENS": "100000"}
    url, server = start_server(simulator, tmp_path / "daphne.log", cores=SERVER_CORE, **env)
    results = []
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            log_in(http, alice)
            cookies = dict(http.cookies)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            for shape, markdown in (("Markdown sections", True), ("one paragraph", False)):
                simulator.configure(
                    ttft=0.3, tps=TOKENS_PER_SECOND, words=WORDS, markdown=markdown, requests=[]
                )
                context = browser.new_context(base_url=url)
                context.add_cookies(
                    [{"name": name, "value": value, "url": url} for name, value in cookies.items()]
                )
                results.append(_stream_one(context.new_page(), alice, shape))
                context.close()
            browser.close()
    finally:
        stop_process(server)
        stop_process(simulator_process)
    if REPORT:
        _write_report(Path(REPORT).with_name("performance-long-stage.md"), results)
    for result in results:
        assert result.words >= WORDS, f"{result.shape}: {result.words} words shown"


def _stream_one(page, owner, shape: str) -> LongStage:
    case = ClinicalCase.objects.create(owner=owner, chief_complaint=f"Long stage: {shape}")
    page.goto(f"/cases/{case.pk}/")
    page.evaluate(WATCH_THE_MAIN_THREAD)
    started = time.perf_counter()
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    page.locator("li[data-stage-key=summary][data-status=complete]").wait_for(timeout=180_000)
    seconds = time.perf_counter() - started
    bench = page.evaluate("() => { window.bench.watching = false; return window.bench; }")
    text = page.locator("[data-reasoning=summary]").inner_text()
    gaps, tasks = bench["gaps"][1:], bench["tasks"]
    return LongStage(
        shape=shape,
        seconds=seconds,
        words=len(text.split()),
        longest_task_ms=max(tasks, default=0.0),
        long_tasks_ms=sum(tasks),
        longest_gap_ms=max(gaps, default=0.0),
        slow_frames=sum(gap > 100 for gap in gaps),
    )


HEADER = (
    "| text | words shown | click → complete (s) | longest task (ms) | in long tasks (ms) "
    "| longest frame gap (ms) | frame gaps over 100 ms |\n|---|---|---|---|---|---|---|"
)


def _write_report(path: Path, results: list[LongStage]) -> None:
    rows = "\n".join(
        f"| {r.shape} | {r.words:,} | {r.seconds:.1f} | {r.longest_task_ms:,.0f} | "
        f"{r.long_tasks_ms:,.0f} | {r.longest_gap_ms:,.0f} | {r.slow_frames} |"
        for r in results
    )
    path.write_text(
        f"""# A 20,000-word stage in the browser

Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
(`tests/load/test_long_stage.py`).

One stage of {WORDS:,} words, sent by the simulator at {TOKENS_PER_SECOND:,} tokens a second
(`LLM_MAX_TOKENS` raised to let it), to one clinician's page in Debian's Chromium, the
server on one core. While it streams, the page renders Markdown one finished block at a
time and keeps the unfinished block as written; it never renders the whole text again
until the stage is complete. The page records its own main thread from the click to the
stage shown complete: its longest task, the time spent in tasks over 50 ms, the longest
wait between two painted frames, and how many waits were over 100 ms. "One paragraph" is
the same length with no block ever finished before the end.

{HEADER}
{rows}
"""
    )
