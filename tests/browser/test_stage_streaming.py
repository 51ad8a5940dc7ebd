"""A clinician logs in, enters a case and watches a stage stream, in Chromium."""

import itertools
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.proxies import CuttingProxy
from tests.streams import squash

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _grows(locator, observations: int = 4) -> list[int]:
    """The lengths of the text seen over several observations while it streams."""
    lengths = []
    for _ in range(observations):
        locator.page.wait_for_timeout(400)
        lengths.append(len(locator.inner_text()))
    return lengths


def _new_case(page) -> None:
    page.get_by_role("link", name="New case").first.click()
    page.get_by_label("Age").fill("58")
    page.get_by_label("Sex").select_option("male")
    page.get_by_label("Chief complaint").fill("Chest pain for 2 hours")
    page.get_by_label("Vitals").fill("HR 104, BP 150/90")
    page.get_by_role("button", name="Create case").click()
    expect(
        page.get_by_role("heading", name="58-year-old male: Chest pain for 2 hours")
    ).to_be_visible()


def test_it_streams_the_reasoning_and_the_summary(page, alice, simulator):
    simulator.configure(tps=25, words=90)
    log_in(page, "alice", "alice-password-1")
    _new_case(page)

    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "running")
    reasoning = page.locator("[data-reasoning=summary]")
    lengths = _grows(reasoning)
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0] > 0, lengths

    expect(step).to_have_attribute("data-status", "complete", timeout=30_000)
    expected = simulator.sent()[-1]["reasoning"]
    assert squash(reasoning.inner_text()) == squash(expected)
    bubble = page.locator("[data-chat-message][data-role=assistant]")
    expect(bubble.locator("[data-summary=summary]")).to_contain_text("Simulated summary")
    meta = page.locator("#reasoning-summary .run-meta")
    expect(meta).to_contain_text("simulator")  # the model, when, and how long it took
    expect(meta.locator("time")).to_have_text(re.compile(r"^\d{1,2} \w{3}, \d\d:\d\d UTC$"))
    expect(meta).to_contain_text(re.compile(r"took \d"))
    details = page.locator("#reasoning-summary .run-details")  # the rest, on request
    expect(details.get_by_text("First text after")).to_be_hidden()
    details.get_by_text("Technical details").click()
    expect(details.get_by_text("First text after")).to_be_visible()
    expect(details).to_contain_text(re.compile(r"First text after .*\d+ tokens generated", re.S))
    expect(page.locator("#reasoning-summary .typing")).to_have_count(0)


def test_a_reload_mid_stream_continues_without_duplicates(page, alice, simulator):
    simulator.configure(tps=20, words=120)
    log_in(page, "alice", "alice-password-1")
    _new_case(page)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    reasoning = page.locator("[data-reasoning=summary]")
    expect(reasoning).to_contain_text("Simulated reasoning")
    page.wait_for_timeout(1500)
    before = squash(reasoning.inner_text())

    page.reload()
    after_reload = squash(reasoning.inner_text())
    assert after_reload.startswith(before)
    lengths = _grows(reasoning, 3)
    assert lengths[-1] > lengths[0], "the stream goes on after the reload"

    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "complete", timeout=30_000)
    expected = simulator.sent()[-1]["reasoning"]
    assert squash(reasoning.inner_text()) == squash(expected)
    expect(page.locator("[data-summary=summary]")).to_have_count(1)


def test_a_stage_that_needs_an_earlier_one_runs_it_first_and_says_so(page, alice, simulator):
    log_in(page, "alice", "alice-password-1")
    _new_case(page)
    simulator.configure(tps=40, words=60)
    run = page.get_by_role(
        "button", name="Run 2 stages: problem representation, differential diagnosis"
    )
    expect(run).to_have_text("Run 2 stages")
    expect(run).to_have_attribute("title", "Runs problem representation first")
    run.click()
    summary, differential = (
        page.locator(f"li[data-stage-key={k}]") for k in ("summary", "differential")
    )
    expect(summary).to_have_attribute("data-status", "running")
    expect(differential).to_have_attribute("data-status", "queued")
    expect(page.locator("#stepper .progress")).to_contain_text(
        "Up to differential diagnosis: stage 1 of 2"
    )
    expect(summary.get_by_role("button", name="Stop problem representation")).to_be_visible()
    expect(differential.get_by_role("button", name="Stop differential diagnosis")).to_be_visible()
    stop_both = page.locator('[data-action=cancel][data-group-key="differential"]')
    expect(stop_both).to_be_focused()  # the Stop that stops both
    expect(differential).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(summary).to_have_attribute("data-status", "complete")
    expect(differential.get_by_role("button", name="Run again: differential")).to_be_focused()
    expect(page.locator("[data-summary=differential]")).to_contain_text("Simulated summary")
    expect(
        differential.get_by_role("button", name="Run again: differential diagnosis")
    ).to_be_visible()


# Counts the deltas the page receives and the animation frames in which the stage's
# streaming reasoning grew.
RECORD_GROWTH = """() => {
  window.deltas = 0;
  window.growths = 0;
  let shown = 0;
  document.addEventListener("htmx:sseMessage", (event) => {
    if (event.detail.type === "delta") { window.deltas += 1; }
  });
  (function sample() {
    const text = document.querySelector(".stream-text[data-reasoning=summary]");
    const length = text ? text.textContent.length : 0;
    if (length > shown) { window.growths += 1; }
    shown = length;
    requestAnimationFrame(sample);
  })();
}"""


def _run_recording(context, case, recorder: str):
    """Alice's page of the case, recording with `recorder` while the summary stage runs to
    its end."""
    page = context.new_page()
    log_in(page, "alice", "alice-password-1")
    page.goto(f"/cases/{case.pk}/")
    page.evaluate(recorder)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "complete", timeout=30_000)
    return page


@pytest.mark.parametrize("motion", ["no-preference", "reduce"])
def test_text_flows_at_a_steady_pace_unless_the_reader_asks_for_less_motion(
    browser, server, alice, case, simulator, motion
):
    simulator.configure(tps=10, words=50)
    context = browser.new_context(base_url=server, reduced_motion=motion)
    page = _run_recording(context, case, RECORD_GROWTH)

    deltas, growths = page.evaluate("[window.deltas, window.growths]")
    assert deltas >= 20, deltas
    if motion == "reduce":
        assert growths <= deltas + 2, "each delta's text shows at once"
    else:
        assert growths >= 2 * deltas, "each delta's text is spelled out over several frames"
    expected = simulator.sent()[-1]["reasoning"]
    assert squash(page.locator("[data-reasoning=summary]").inner_text()) == squash(expected)
    context.close()


# Records, in the page, each text the live reasoning of the summary stage shows while it
# streams (until the finished run's markdown replaces it).
RECORD_LIVE_TEXT = """() => {
  window.liveTexts = [];
  const live = "#reasoning-summary .stream-text[data-reasoning=summary]";
  new MutationObserver(() => {
    const element = document.querySelector(live);
    const seen = window.liveTexts;
    if (element && element.textContent !== seen[seen.length - 1]) {
      seen.push(element.textContent);
    }
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
}"""


@pytest.mark.parametrize("motion", ["no-preference", "reduce"])
def test_a_stream_cut_several_times_shows_every_word_once(
    browser, server, alice, case, simulator, motion
):
    simulator.configure(tps=50, words=300)
    with CuttingProxy(server, cuts=[3000, 6000, 6000]) as proxy:
        context = browser.new_context(base_url=proxy.url, reduced_motion=motion)
        page = _run_recording(context, case, RECORD_LIVE_TEXT)
        seen = page.evaluate("window.liveTexts")
        shown = page.locator("#reasoning-summary [data-reasoning=summary]").inner_text()
        context.close()

    sent = simulator.sent()[-1]["reasoning"]
    assert proxy.cut == 3, "every cut fell while the stage streamed"
    assert len(seen) > 20
    for before, after in itertools.pairwise(seen):
        assert after.startswith(before), (
            f"the page lost or repeated text: {before[-60:]!r} → {after[-60:]!r}"
        )
    assert sent.startswith(seen[-1]), "the page showed text the provider never sent"
    if motion == "reduce":  # no text is still being spelled out when the run ends
        assert seen[-1] == sent
    assert squash(shown) == squash(sent)


def test_markdown_renders_one_finished_block_at_a_time_while_it_streams(page, alice, simulator):
    simulator.configure(tps=80, words=240, markdown=True)
    log_in(page, "alice", "alice-password-1")
    _new_case(page)

    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    step = page.locator("li[data-stage-key=summary]")
    reasoning = page.locator("[data-reasoning=summary]")
    first = reasoning.locator("h3").first
    expect(first).to_have_text("Section 1")
    assert step.get_attribute("data-status") == "running"
    first.evaluate("heading => { heading.dataset.kept = ''; }")  # lost if it were redrawn

    expect(reasoning.locator("h3")).to_have_count(2)
    expect(reasoning.locator("ul li").first).to_be_visible()
    assert step.get_attribute("data-status") == "running"
    assert reasoning.locator("h3[data-kept]").count() == 1  # rendered once, kept since
    blocks = "el => [...el.children].filter(c => c.tagName !== 'SPAN').map(c => c.textContent)"
    rendered = " ".join(reasoning.evaluate(blocks))
    assert "###" not in rendered and "Section 1" in rendered
    assert not re.search(r"^- ", rendered, re.M)

    expect(step).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(reasoning.locator("h3")).to_have_count(4)
    expect(reasoning.locator("table")).to_have_count(1)
    assert "###" not in reasoning.inner_text() and "|---|" not in reasoning.inner_text()
