"""Nothing on screen is out of date, in Chromium: a stage turned stale shows so at once in
both panels, and on another page of the case when the clinician comes back to it; an
earlier run is marked so, and its Retry or Continue goes once it is moot."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def _bubbles(page, key):
    return page.locator("#chat-log article").filter(has=page.locator(f"[data-summary={key}]"))


def test_a_stage_run_again_turns_the_next_stale_at_once_on_every_page(workspace, simulator):
    page = workspace
    simulator.configure(tps=200, words=40)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete")
    other = page.context.new_page()
    other.goto(page.url)
    other.get_by_label("Ask a follow-up question").fill("A question half")
    page.bring_to_front()

    simulator.configure(tps=10, words=300)
    page.get_by_role("button", name="Run again: problem representation").click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "running")
    differential = page.locator("#reasoning-differential")
    expect(differential).to_have_attribute("data-status", "stale")
    expect(differential.locator(".stale-note")).to_contain_text(
        "Out of date. Problem representation was run again after this was written."
    )
    stale_summary = _bubbles(page, "differential")
    expect(stale_summary).to_have_attribute("data-status", "stale")
    expect(stale_summary).to_contain_text("out of date")
    expect(stale_summary).to_contain_text("Problem representation was run again")
    expect(_bubbles(page, "summary").first).to_contain_text("earlier run")
    expect(_step(page, "summary")).to_have_attribute("data-status", "running")  # at once

    # The clinician comes back to the other page (headless Chromium fires no focus event
    # of its own when a page is brought to the front).
    other.bring_to_front()
    other.evaluate("() => window.dispatchEvent(new FocusEvent('focus'))")
    expect(other.locator("#reasoning-differential")).to_have_attribute("data-status", "stale")
    expect(_bubbles(other, "differential")).to_contain_text("out of date")
    expect(other.locator("#reasoning-summary")).to_contain_text("Simulated")  # and follows
    expect(other.get_by_label("Ask a follow-up question")).to_have_value("A question half")

    simulator.configure(tps=400, words=40)
    expect(_step(other, "summary")).to_have_attribute("data-status", "complete", timeout=60_000)
    other.locator("#reasoning-differential .stale-note").get_by_role("button").click()
    expect(_step(other, "differential")).to_have_attribute("data-status", "complete")
    expect(other.locator("#reasoning-differential .stale-note")).to_have_count(0)
    expect(_bubbles(other, "differential").last).not_to_contain_text("out of date")


def test_retry_and_continue_go_once_a_later_run_or_reply_exists(workspace, simulator):
    page = workspace
    # The first drop is carried on without a click (LLM_AUTO_CONTINUE=1); the second ends it.
    simulator.configure(faults=["drop@20", "drop@5"], tps=200, words=60)
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "error")
    failed = _bubbles(page, "summary").first
    expect(failed.get_by_role("button", name="Continue")).to_be_visible()

    page.locator("#reasoning-summary").get_by_role("button", name="Retry").click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete")
    expect(failed).to_contain_text("earlier run")
    expect(page.locator("#chat-log [data-action=retry]")).to_have_count(0)
    expect(page.locator("#chat-log [data-action=continue]")).to_have_count(0)

    simulator.configure(faults=["401"])
    box = page.get_by_label("Ask a follow-up question")
    box.fill("What next?")
    box.press("Enter")
    expect(page.locator("#chat-log [data-action=retry]")).to_have_count(1)
    page.locator("#chat-log [data-action=retry]").click()
    expect(page.locator("[data-reply]").last).to_contain_text("the")
    expect(box).to_be_editable()
    expect(page.locator("#chat-log [data-action=retry]")).to_have_count(0)
    page.reload()
    expect(page.locator("#chat-log [data-action=retry]")).to_have_count(0)
