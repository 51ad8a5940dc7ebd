"""On a phone (390 px wide) and a tablet (768 px), in Chromium: nothing overflows sideways,
and the stepper is one line until it is opened, so the reasoning and the chat come first."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from workflow.models import ClinicalCase

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 768, "height": 1024}
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.mark.parametrize("screen", [PHONE, TABLET], ids=["phone", "tablet"])
def test_a_small_screen_shows_the_reasoning_and_the_chat_first(
    page, alice, case, simulator, screen
):
    ClinicalCase.objects.create(
        owner=alice, chief_complaint="Crushing retrosternal chest pain radiating to the jaw"
    )
    page.set_viewport_size(screen)
    log_in(page, "alice", "alice-password-1")
    assert page.evaluate(OVERFLOW) == 0, "the case list fits"

    page.goto(f"/cases/{case.pk}/")
    assert page.evaluate(OVERFLOW) == 0, "the workspace fits"
    line = page.locator(".stepper-line")
    expect(line).to_contain_text("0 of 6 stages complete")
    expect(page.locator("#step-summary")).to_be_hidden()
    assert page.locator("#stepper").bounding_box()["height"] < 160
    assert page.locator("#reasoning-panel").bounding_box()["y"] < screen["height"]
    assert page.locator("#chat-input").bounding_box()["y"] < 2 * screen["height"]

    toggle = page.get_by_role("button", name="Stages", exact=True)
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.get_by_role("button", name="Run problem representation").click()
    expect(line).to_contain_text("Problem representation running")
    expect(page.locator("#step-summary")).to_have_attribute("data-status", "complete")
    expect(line).to_contain_text("1 of 6 stages complete")
    expect(page.locator("#step-summary")).to_be_visible()  # still open after the redraws
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert page.evaluate(OVERFLOW) == 0, "the workspace with text fits"
    toggle.click()
    expect(page.locator("#step-summary")).to_be_hidden()
