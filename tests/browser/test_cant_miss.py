"""The can't-miss diagnoses come first, in a lane of their own, as the differential names
them, and stay when a later stage fails."""

import pytest
from playwright.sync_api import expect

from tests.llm_simulator import CANT_MISS
from tests.streams import squash

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def test_the_lane_comes_first_as_the_differential_names_them(workspace, simulator):
    page = workspace
    lane = page.locator("[data-cant-miss]")
    expect(lane).to_have_count(0)  # before the differential has run
    simulator.configure(tps=12, words=16)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    # Shown while the differential is still being written (under load, the lines written
    # in one flush arrive in one event: how many is up to the machine).
    expect(lane.locator("[data-cant-miss-item]").first).to_be_visible(timeout=30_000)
    assert _step(page, "differential").get_attribute("data-status") == "running"
    expect(lane).to_have_attribute("data-cant-miss", "present")
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete")
    expect(lane.locator("[data-cant-miss-item]")).to_have_text(list(CANT_MISS))
    assert squash(lane.inner_text()) == f"Must not miss: {', '.join(CANT_MISS)}"
    top = lane.bounding_box()["y"]
    assert top < page.locator("#reasoning-panel").bounding_box()["y"]
    assert top < page.locator("#chat").bounding_box()["y"]

    simulator.configure(faults=["401"])
    page.locator("[data-action=run-stage][data-stage-key=diagnostics]").first.click()
    expect(_step(page, "diagnostics")).to_have_attribute("data-status", "error")
    expect(lane.locator("[data-cant-miss-item]")).to_have_text(list(CANT_MISS))
    page.reload()
    expect(lane.locator("[data-cant-miss-item]")).to_have_text(list(CANT_MISS))


def test_the_lane_says_when_the_differential_named_none(workspace, simulator):
    page = workspace
    simulator.configure(tps=200, words=20, faults=["", "nocantmiss"])
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    lane = page.locator("[data-cant-miss]")
    expect(lane).to_have_attribute("data-cant-miss", "missing", timeout=30_000)
    expect(lane).to_contain_text("did not name its can't-miss diagnoses")
