"""A clinician runs a group, asks a follow-up question and edits the case, in Chromium."""

import pytest
from playwright.sync_api import expect

from workflow.models import ClinicalCase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def test_a_group_streams_stage_by_stage_and_then_a_follow_up_streams(workspace, simulator):
    page = workspace
    simulator.configure(tps=40, words=40)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()

    expect(_step(page, "summary")).to_have_attribute("data-status", "running")
    expect(_step(page, "differential")).to_have_attribute("data-status", "queued")
    expect(page.locator("#stepper .progress")).to_contain_text("Assessment: stage 1 of 2")
    expect(_step(page, "summary").locator(".elapsed")).to_contain_text(":")
    expect(_step(page, "differential")).to_have_attribute("data-status", "running", timeout=30_000)
    expect(page.locator("#stepper .progress")).to_contain_text("Assessment: stage 2 of 2")
    expect(page.locator("[data-reasoning=differential]")).to_contain_text("Simulated reasoning")
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(page.locator("[data-summary=summary]")).to_contain_text("Simulated summary")
    expect(page.locator("[data-summary=differential]")).to_contain_text("Simulated summary")

    simulator.configure(tps=15, words=60)
    box = page.get_by_label("Ask a follow-up question")
    box.fill("Which can't-miss diagnosis")
    box.press("Shift+Enter")
    box.type("comes first?")
    box.press("Enter")
    question = page.locator("[data-chat-message][data-role=user]")
    expect(question).to_have_text("Which can't-miss diagnosis\ncomes first?")
    expect(page.get_by_label("Ask a follow-up question")).not_to_be_editable()
    reply = page.locator("[data-reply]")
    expect(reply).to_contain_text("the")
    seen = [len(reply.inner_text())]
    for _ in range(3):
        page.wait_for_timeout(400)
        seen.append(len(reply.inner_text()))
    assert seen[-1] > seen[0], seen
    expect(page.get_by_label("Ask a follow-up question")).to_be_editable(timeout=30_000)
    expect(page.get_by_label("Ask a follow-up question")).to_have_value("")


def test_selecting_a_stage_shows_its_reasoning(workspace, simulator):
    page = workspace
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    summary = page.get_by_role("link", name="Problem representation")
    summary.click()  # while the group runs: its events redraw the stepper
    expect(summary).to_have_attribute("aria-current", "true")  # what a screen reader hears
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(summary).to_have_attribute("aria-current", "true")  # kept through the redraws
    differential = page.get_by_role("link", name="Differential diagnosis")
    differential.click()
    expect(page.locator("#reasoning-differential")).to_be_visible()
    expect(page.locator("#reasoning-summary")).to_be_hidden()
    assert page.url.endswith("?stage=differential")
    expect(summary).not_to_have_attribute("aria-current", "true")
    page.reload()
    expect(differential).to_have_attribute("aria-current", "true")
    page.get_by_role("button", name="Show all stages").click()
    expect(page.locator("#reasoning-summary")).to_be_visible()
    expect(differential).not_to_have_attribute("aria-current", "true")


def test_editing_the_case_turns_the_stages_stale(workspace, case, simulator):
    page = workspace
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)

    page.get_by_role("link", name="Edit case").click()
    page.get_by_label("Vitals").fill("HR 130, BP 80/50")
    page.get_by_role("button", name="Save changes").click()

    expect(_step(page, "summary")).to_have_attribute("data-status", "stale")
    expect(_step(page, "differential")).to_have_attribute("data-status", "stale")
    expect(
        page.get_by_role("status").filter(has_text="stages run before are now stale")
    ).to_be_visible()
    assert ClinicalCase.objects.get().vitals == "HR 130, BP 80/50"

    stale_differential = page.locator("#reasoning-differential .stale-note").get_by_role("button")
    expect(stale_differential).to_have_text("Run 2 stages")  # its summary is stale too
    note = page.locator("#reasoning-summary .stale-note")
    expect(note).to_contain_text("Out of date. The case was edited after this was written.")
    note.get_by_role("button", name="Run again: problem representation").click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(note).to_have_count(0)
    expect(_step(page, "differential")).to_have_attribute("data-status", "stale")
    expect(page.locator("#reasoning-summary .history summary")).to_have_text("Earlier runs (1)")


def test_the_panel_follows_new_text_unless_scrolled_up_and_jump_brings_it_back(
    workspace, simulator
):
    page = workspace
    simulator.configure(tps=40, words=600)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    panel = page.locator(".ReasoningPanel")
    gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    # A function, not an expression: the page's policy forbids eval, which an expression needs.
    page.wait_for_function(
        "() => document.querySelector('.ReasoningPanel').scrollHeight > "
        "document.querySelector('.ReasoningPanel').clientHeight + 200"
    )
    assert panel.evaluate(gap) < 48, "it follows the newest text"

    panel.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    jump = panel.get_by_role("button", name="Jump to live")
    expect(jump).to_be_visible()
    page.wait_for_timeout(500)
    assert panel.evaluate("el => el.scrollTop") == 0, "reading earlier text is not disturbed"

    jump.click()
    expect(jump).to_be_hidden()
    page.wait_for_timeout(500)
    assert panel.evaluate(gap) < 48


# Where the running stage's newest text is against the visible part of the ReasoningPanel,
# and how far the panel is from its own bottom.
LIVE_TEXT = """() => {
  const panel = document.getElementById("reasoning-panel");
  const live = document.querySelector('.reasoning[data-status="running"] [data-reasoning]');
  const shown = panel.getBoundingClientRect(), text = live.getBoundingClientRect();
  return {inView: text.bottom > shown.top && text.bottom <= shown.bottom + 2,
          belowIt: panel.scrollHeight - panel.scrollTop - panel.clientHeight};
}"""


def test_the_panel_follows_a_stage_run_again_in_the_middle_even_after_a_reload(
    workspace, simulator
):
    page = workspace
    simulator.configure(tps=1000, words=400)
    page.get_by_role("button", name="Run all stages").click()
    expect(_step(page, "note")).to_have_attribute("data-status", "complete", timeout=60_000)

    simulator.configure(tps=30, words=600)
    page.get_by_role("button", name="Run again: diagnostic workup").click()
    expect(page.locator("#reasoning-diagnostics [data-reasoning]")).to_contain_text("Simulated")
    for _ in range(2):
        page.wait_for_timeout(1500)  # text keeps arriving; the view keeps up with it
        where = page.evaluate(LIVE_TEXT)
        assert where["inView"], where
        assert where["belowIt"] > 500, "the later stages stay below, out of the way"
        page.reload()
        expect(page.locator("#reasoning-diagnostics [data-reasoning]")).to_contain_text("the")


def test_the_chat_input_never_covers_a_message_or_the_jump_button(workspace, simulator):
    page = workspace
    simulator.configure(tps=1000, words=120)
    page.get_by_role("button", name="Run all stages").click()
    expect(_step(page, "note")).to_have_attribute("data-status", "complete", timeout=60_000)
    log, form = page.locator("#chat-log"), page.locator("#chat-form")
    log.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    last = page.locator("#chat-log [data-chat-message]").last
    assert last.bounding_box()["y"] + last.bounding_box()["height"] <= form.bounding_box()["y"]

    log.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    simulator.configure(tps=30, words=200)
    page.get_by_label("Ask a follow-up question").fill("And then?")
    page.get_by_label("Ask a follow-up question").press("Enter")
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_visible()
    box = jump.bounding_box()
    assert box["y"] + box["height"] <= form.bounding_box()["y"], "the input does not cover it"
    jump.click()
    expect(jump).to_be_hidden()
