"""A clinician signs off what the model wrote, in Chromium: accepts a stage, corrects one
(the correction is what the chat and the note build on), rejects one with a reason, and
cannot accept a stage that stopped early without completing it."""

import pytest
from playwright.sync_api import expect

from tests.browser.accessibility import violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_accept_edit_and_reject_each_show_who_decided(workspace, simulator, alice):
    alice.first_name, alice.last_name = "Alice", "Adams"
    alice.save()
    page = workspace
    simulator.configure(tps=1000, words=30)
    page.get_by_role("button", name="Run group: Assessment").click()
    differential = page.locator("li[data-stage-key=differential]")
    expect(differential).to_have_attribute("data-status", "complete", timeout=30_000)
    summary = page.locator("li[data-stage-key=summary]")
    expect(summary).to_have_attribute("data-signoff", "none")

    page.locator("[data-action=accept][data-stage-key=summary]").click()
    expect(summary).to_have_attribute("data-signoff", "accepted")
    expect(page.locator("#notice")).to_have_text("Problem representation: accepted.")
    decision = page.locator("#reasoning-summary .decision")
    expect(decision).to_contain_text("Accepted by Alice Adams")
    expect(page.locator("#chat-log .decision").first).to_contain_text("Accepted by Alice Adams")
    expect(page.locator("[data-action=accept][data-stage-key=summary]")).to_have_count(0)

    page.locator("[data-action=edit][data-stage-key=differential]").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit differential diagnosis")
    assert violations(page) == []
    page.get_by_label("Summary (the chat)").fill("- **Aortic dissection** first: pulses unequal")
    page.get_by_label("Reasoning (the reasoning panel)").fill("Unequal arm pulses: dissection.")
    page.get_by_role("button", name="Save and sign").click()

    expect(differential).to_have_attribute("data-signoff", "edited")
    expect(page.locator("[data-summary=differential]")).to_have_text(
        "Aortic dissection first: pulses unequal"
    )
    expect(page.locator("[data-reasoning=differential]")).to_have_text(
        "Unequal arm pulses: dissection."
    )
    original = page.locator("#reasoning-differential details.original")
    original.get_by_text("The model's original").click()
    expect(original.locator(".markdown").first).not_to_be_empty()
    expect(page.locator("#reasoning-differential .decision")).to_contain_text("Edited by Alice")

    page.locator("[data-select-stage=summary]").click()  # the page came back to the differential
    page.get_by_label("Why reject problem representation (optional)").fill("Wrong age.")
    page.locator("[data-action=reject][data-stage-key=summary]").click()
    expect(summary).to_have_attribute("data-signoff", "rejected")
    expect(page.locator("#reasoning-summary .decision")).to_contain_text("Why: Wrong age.")
    expect(differential).to_have_attribute("data-status", "stale")  # built on the rejected one
    expect(differential).to_have_attribute("data-signoff", "edited")  # kept when stale
    assert violations(page) == []


def test_a_stage_stopped_early_is_marked_incomplete_and_needs_an_edit(workspace, simulator):
    page = workspace
    simulator.configure(tps=10, words=400)
    page.get_by_role("button", name="Run problem representation").click()
    reasoning = page.locator("[data-reasoning=summary]")
    expect(reasoning).not_to_be_empty()
    page.locator("[data-action=cancel][data-stage-key=summary]").click()
    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "cancelled")

    expect(page.locator("#reasoning-summary .badge.incomplete")).to_be_visible()
    expect(page.locator("#chat-log .badge.incomplete")).to_be_visible()
    expect(page.locator("[data-action=accept][data-stage-key=summary]")).to_have_count(0)
    expect(page.locator("#reasoning-summary .signoff")).to_contain_text(
        "Incomplete: edit it to complete it before you accept it."
    )

    page.locator("[data-action=edit][data-stage-key=summary]").click()
    reasoning_field = page.get_by_label("Reasoning (the reasoning panel)")
    reasoning_field.fill(reasoning_field.input_value() + " … completed by the clinician.")
    page.get_by_role("button", name="Save and sign").click()
    summary_field = page.get_by_label("Summary (the chat)")  # it stopped before its summary
    expect(summary_field).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("Write the corrected text, or reject the stage.")).to_be_visible()
    summary_field.fill("- 58M, chest pain: ACS until shown otherwise")
    page.get_by_role("button", name="Save and sign").click()
    expect(step).to_have_attribute("data-signoff", "edited")
    expect(page.locator("#reasoning-summary .badge.incomplete")).to_have_count(0)
    expect(page.locator("[data-reasoning=summary]")).to_contain_text("completed by the clinician")
