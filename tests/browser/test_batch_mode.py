"""Streaming off for a clinician (the `streaming` flag): what the panels show in Chromium,
and a flag flipped while a stage streams."""

import pytest
from playwright.sync_api import expect
from waffle.models import Flag

from tests.streams import squash

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def test_with_streaming_off_the_panels_name_the_phase_then_show_the_whole_text(
    workspace, bob, simulator
):
    page = workspace
    Flag.objects.create(name="streaming", everyone=None).users.set([bob])  # on for bob only
    simulator.configure(ttft=3)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()

    phase = page.locator("#reasoning-summary [data-batch-phase]")
    expect(phase).to_contain_text("Writing the whole answer: it appears at once when it is done.")
    expect(phase.locator(".elapsed")).to_contain_text("0:0")
    expect(page.locator("[data-summary=summary]").locator("..")).to_contain_text(
        "Writing the whole answer"
    )
    assert page.locator("[data-reasoning=summary]").inner_text() == ""  # nothing piecemeal
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(_step(page, "summary")).to_have_attribute("data-mode", "batch")
    sent = simulator.sent()[-1]
    assert squash(page.locator("[data-reasoning=summary]").inner_text()) == squash(
        sent["reasoning"]
    )
    expect(phase).to_have_count(0)

    page.get_by_label("Ask a follow-up question").fill("And then?")
    page.get_by_label("Ask a follow-up question").press("Enter")
    expect(page.locator("#chat-log [data-batch-phase]")).to_be_visible()
    expect(page.get_by_label("Ask a follow-up question")).to_be_editable(timeout=20_000)
    expect(page.locator("#chat-log [data-batch-phase]")).to_have_count(0)
    assert squash(page.locator("[data-reply]").inner_text()) == squash(
        simulator.sent()[-1]["content"]
    )


def test_a_flag_flipped_while_a_stage_streams_applies_from_the_next_stage(workspace, simulator):
    page = workspace
    simulator.configure(tps=15, words=80)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    reasoning = page.locator("[data-reasoning=summary]")
    expect(reasoning).to_contain_text("Simulated reasoning")
    Flag.objects.create(name="streaming", everyone=False)  # off for everyone, now
    seen = len(reasoning.inner_text())
    page.wait_for_timeout(800)
    assert len(reasoning.inner_text()) > seen, "the running stage goes on streaming"
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(_step(page, "summary")).to_have_attribute("data-mode", "stream")

    simulator.configure(ttft=2)
    page.locator("[data-action=run-stage][data-stage-key=differential]").click()
    expect(page.locator("#reasoning-differential [data-batch-phase]")).to_be_visible()
    expect(_step(page, "differential")).to_have_attribute("data-mode", "batch")
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=20_000)
