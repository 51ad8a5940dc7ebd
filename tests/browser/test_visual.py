"""The main pages and states look as they did, on a laptop and on a phone (390 px)."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.visual import assert_looks_as_before

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def test_the_pages_before_a_stage_runs(page, alice, case):
    page.goto("/")
    assert_looks_as_before(page, "login")
    log_in(page, "alice", "alice-password-1")
    assert_looks_as_before(page, "case-list")
    page.get_by_role("link", name="New case").first.click()
    page.get_by_label("Age").fill("200")
    page.get_by_role("button", name="Create case").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert_looks_as_before(page, "case-form-with-errors")
    page.goto(f"/cases/{case.pk}/")
    assert_looks_as_before(page, "workspace-idle")


def test_the_workspace_complete_stale_and_failed(page, alice, case, simulator):
    log_in(page, "alice", "alice-password-1")
    page.goto(f"/cases/{case.pk}/")
    simulator.configure(tps=400, words=40)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    assert_looks_as_before(page, "workspace-complete")
    simulator.configure(faults=["401"])
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "error", timeout=30_000)
    assert_looks_as_before(page, "workspace-failed")
    simulator.configure(tps=400, words=40)
    page.locator("[data-action=retry][data-stage-key=summary]").first.click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "stale", timeout=30_000)
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete", timeout=30_000)
    assert_looks_as_before(page, "workspace-stale")


def test_a_phone(page, alice, case, simulator):
    page.set_viewport_size(PHONE)
    log_in(page, "alice", "alice-password-1")
    assert_looks_as_before(page, "phone-case-list")
    page.goto(f"/cases/{case.pk}/")
    assert_looks_as_before(page, "phone-workspace-idle")
    simulator.configure(tps=400, words=40)
    page.get_by_role("button", name="Stages", exact=True).click()
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    assert_looks_as_before(page, "phone-workspace-complete")
