"""What a clinician sees when things fail, in Chromium: nothing lost, a clear next step."""

import pytest
from playwright.sync_api import expect

from tests.conftest import scrape
from tests.streams import squash
from workflow.models import StageRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_mid_stream_failure_shows_in_both_panels_and_continue_finishes(workspace, simulator):
    page = workspace
    # The first drop is carried on without a click (LLM_AUTO_CONTINUE=1); the second ends it.
    simulator.configure(faults=["drop@40", "drop@5"], tps=60)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()

    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "error", timeout=20_000)
    panel_error = page.locator("#reasoning-summary .run-error")
    expect(panel_error).to_contain_text("The connection to the AI provider was lost.")
    expect(panel_error).to_contain_text("What was generated before that is kept above.")
    expect(panel_error).to_contain_text("Reference")
    chat_error = page.locator("#chat-log .run-error")
    expect(chat_error).to_contain_text("Problem representation stopped early.")
    partial = squash(page.locator("[data-reasoning=summary]").inner_text())
    cut, cut_again = simulator.sent()
    assert partial and partial == squash(cut["reasoning"] + cut_again["reasoning"])

    retry = page.locator("#reasoning-summary [data-action=retry]")
    expect(retry).to_be_visible()
    cont = page.locator("#reasoning-summary [data-action=continue]")
    cont.focus()
    page.keyboard.press("Enter")

    expect(step).to_have_attribute("data-status", "complete", timeout=20_000)
    final = squash(page.locator("#reasoning-summary [data-reasoning=summary]").inner_text())
    assert final == squash("".join(sent["reasoning"] for sent in simulator.sent()))


def test_stop_ends_the_stage_and_keeps_the_text(workspace, simulator):
    page = workspace
    simulator.configure(tps=15, words=300)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    reasoning = page.locator("[data-reasoning=summary]")
    expect(reasoning).to_contain_text("Simulated reasoning")
    page.get_by_role("button", name="Stop problem representation").click()

    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#reasoning-summary .run-error")).to_contain_text(
        "Stopped by the clinician."
    )
    kept = squash(reasoning.inner_text())
    assert kept == squash(StageRun.objects.get().reasoning)
    page.wait_for_timeout(1500)  # the provider would have sent about 20 more tokens
    assert squash(reasoning.inner_text()) == kept, "no text arrives after Stop"
    assert squash(StageRun.objects.get().reasoning) == kept, "nor is any saved after it"
    expect(page.locator("#reasoning-summary [data-action=continue]")).to_be_visible()


def test_without_a_live_stream_the_page_says_so_and_polls_until_the_end(
    workspace, simulator, server
):
    page = workspace
    polled = ("medhastra_fallbacks_total", (("kind", "polling"),))
    before = scrape(server).get(polled, 0)
    simulator.configure(tps=40, words=120)
    page.route("**/events", lambda route: route.abort())
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()

    expect(
        page.get_by_role("status").filter(has_text="Live updates are unavailable")
    ).to_be_visible()
    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(page.get_by_role("status").filter(has_text="shows the finished work")).to_be_visible()
    final = squash(page.locator("[data-reasoning=summary]").inner_text())
    assert final == squash(simulator.sent()[0]["reasoning"])
    assert scrape(server)[polled] == before + 1  # the operator sees the fallback, once
