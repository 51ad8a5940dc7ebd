"""Usable with a keyboard, as a clinician without a mouse meets it in Chromium: skip links
lead past the stepper, the focus ring can be seen, and focus is never lost to a redraw."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The colour of the focus ring and of what it is drawn on (the nearest ancestor with a
# background), as the page computes them.
RING_AND_GROUND = """() => {
  const focused = document.activeElement;
  let under = focused.parentElement;
  while (under && getComputedStyle(under).backgroundColor === "rgba(0, 0, 0, 0)") {
    under = under.parentElement;
  }
  return [getComputedStyle(focused).outlineColor,
          getComputedStyle(under || document.body).backgroundColor];
}"""


def _luminance(css_rgb: str) -> float:
    red, green, blue = (float(part) / 255 for part in re.findall(r"[\d.]+", css_rgb)[:3])

    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def _contrast(first: str, second: str) -> float:
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_skip_links_lead_past_the_stepper_to_the_reasoning_and_the_chat(workspace):
    workspace.keyboard.press("Tab")
    to_reasoning = workspace.get_by_role("link", name="Skip to the reasoning")
    expect(to_reasoning).to_be_focused()
    expect(to_reasoning).to_be_in_viewport()
    workspace.keyboard.press("Tab")
    to_chat = workspace.get_by_role("link", name="Skip to the chat")
    expect(to_chat).to_be_focused()
    expect(to_reasoning).not_to_be_in_viewport()  # out of sight again once passed

    workspace.keyboard.press("Enter")
    expect(workspace.locator("#chat")).to_be_focused()
    workspace.keyboard.press("Tab")  # on from the chat, not from the top of the page
    expect(workspace.locator("#chat-log")).to_be_focused()  # it scrolls with the arrow keys
    workspace.keyboard.press("Tab")
    expect(workspace.locator("#chat-input")).to_be_focused()

    workspace.reload()
    workspace.keyboard.press("Tab")
    workspace.keyboard.press("Enter")
    expect(workspace.locator("#reasoning-panel")).to_be_focused()


def test_other_pages_skip_to_their_content(page, alice):
    log_in(page, "alice", "alice-password-1")
    page.goto("/cases/new/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")  # past the top bar's links, into the form
    expect(page.get_by_label("Age")).to_be_focused()


def test_the_focus_ring_stands_out_three_to_one(workspace):
    for _ in range(4):  # past the skip links and the brand, onto buttons and links
        workspace.keyboard.press("Tab")
        ring, ground = workspace.evaluate(RING_AND_GROUND)
        assert _contrast(ring, ground) >= 3, (ring, ground)


def _tab_to(page, target, most: int = 100) -> None:
    """Press Tab until `target` has focus, as a keyboard user would."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("(element) => element === document.activeElement"):
            return
    raise AssertionError(f"{target} cannot be reached with Tab")


def test_run_stop_continue_and_ask_with_the_keyboard_alone(workspace, simulator):
    page = workspace
    simulator.configure(tps=15, words=300)
    _tab_to(page, page.get_by_role("button", name="Run problem representation"))
    page.keyboard.press("Enter")
    stop = page.get_by_role("button", name="Stop problem representation")
    expect(stop).to_be_focused()  # the Run pressed was redrawn as this Stop
    expect(page.locator("[data-reasoning=summary]")).to_contain_text("Simulated")

    page.keyboard.press("Space")
    run_again = page.get_by_role("button", name="Run again: problem representation")
    expect(run_again).to_be_focused()
    expect(page.locator("#step-summary")).to_have_attribute("data-status", "cancelled")

    simulator.configure(tps=200, words=300)
    _tab_to(page, page.locator("#reasoning-summary [data-action=continue]"))
    page.keyboard.press("Enter")
    expect(stop).to_be_focused()
    expect(page.locator("#step-summary")).to_have_attribute("data-status", "complete")
    expect(run_again).to_be_focused()  # on completion, as after a Stop

    simulator.configure(tps=15, words=40)
    question = page.get_by_label("Ask a follow-up question")
    _tab_to(page, question)
    page.keyboard.type("Which test comes first?")
    page.keyboard.press("Enter")
    expect(page.locator("[data-reply]")).to_contain_text("the")
    expect(question).to_be_focused()  # read-only while the reply is written
    expect(question).not_to_be_editable()
    expect(question).to_be_editable(timeout=30_000)
    expect(question).to_be_focused()
    expect(question).to_have_value("")
    expect(page.locator("#chat-log")).to_have_attribute("aria-busy", "false")  # read out
