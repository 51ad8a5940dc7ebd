"""WCAG 2.2 AA, as axe-core 4.14 checks it, on every page and state a clinician meets."""

import itertools
import re

import pytest
from playwright.sync_api import expect

from tests.browser.accessibility import violations
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def _accessible(page, state: str) -> None:
    found = violations(page)
    assert not found, f"{state}: " + "\n".join(found)


def test_login_case_list_and_case_form(page, alice, case):
    page.goto("/")
    _accessible(page, "login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    _accessible(page, "login refused")
    log_in(page, "alice", "alice-password-1")
    _accessible(page, "case list")
    page.get_by_role("link", name="New case").first.click()
    page.get_by_role("button", name="Create case").click()
    _accessible(page, "case form with errors")
    page.goto(f"/cases/{case.pk}/edit/")
    page.get_by_label("Chief complaint").fill("")
    page.get_by_role("button", name=re.compile("Save")).click()
    expect(page.get_by_role("alert")).to_be_visible()
    _accessible(page, "case edit form with errors")
    page.goto(f"/cases/{case.pk}/print/")
    _accessible(page, "the report to print")


def test_the_operations_page(page, django_user_model, case, simulator):
    django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True)
    simulator.configure(faults=["401"])
    log_in(page, "alice", "alice-password-1")
    page.goto(f"/cases/{case.pk}/")
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "error", timeout=30_000)
    page.get_by_role("button", name=re.compile("Log out")).click()
    log_in(page, "ops", "ops-password-1")
    page.goto("/ops/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Operations")
    _accessible(page, "operations")


def test_workspace_idle_streaming_stopped_and_complete(workspace, simulator):
    page = workspace
    _accessible(page, "workspace idle")
    simulator.configure(tps=15, words=300)
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(page.locator("[data-reasoning=summary]")).to_contain_text("Simulated")
    _accessible(page, "streaming")
    page.get_by_role("button", name="Stop").first.click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "cancelled")
    _accessible(page, "stopped")
    simulator.configure(tps=200, words=40)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    _accessible(page, "complete")
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(_step(page, "differential")).to_have_attribute("data-status", "stale", timeout=30_000)
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete", timeout=30_000)
    _accessible(page, "stale")


def test_workspace_error(workspace, simulator):
    page = workspace
    simulator.configure(faults=["401"])
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "error", timeout=30_000)
    _accessible(page, "error")


@pytest.mark.parametrize("width", [390, 768])
def test_a_phone_and_a_tablet(page, alice, case, simulator, width):
    page.set_viewport_size({"width": width, "height": 1024})
    log_in(page, "alice", "alice-password-1")
    _accessible(page, f"case list at {width} px")
    page.goto(f"/cases/{case.pk}/")
    _accessible(page, f"workspace at {width} px")
    page.get_by_role("button", name="Stages", exact=True).click()
    _accessible(page, f"workspace at {width} px, its stages shown")


def test_a_failed_submit_focuses_the_first_wrong_field_and_links_its_error(page, alice):
    log_in(page, "alice", "alice-password-1")
    page.goto("/cases/new/")
    page.get_by_label("Age").fill("200")
    page.get_by_role("button", name="Create case").click()
    expect(page.get_by_role("alert")).to_have_text("Please correct the fields marked below.")
    age = page.get_by_label("Age")
    expect(age).to_be_focused()
    expect(age).to_have_accessible_description("Enter an age in years, from 0 to 130.")
    complaint = page.get_by_label("Chief complaint")
    expect(complaint).to_have_accessible_description(
        "Why the patient is here, in a few words: “chest pain for 2 hours”. This field is required."
    )
    expect(page.get_by_label("History")).not_to_have_attribute("aria-describedby", re.compile("."))


# What the page's status region says, each time it changes, and the chat log's busy state.
LISTEN = """() => {
  const announcer = document.getElementById("announcer");
  window.heard = [];
  window.busy = [];
  announcer.dataset.listened = "yes";  // gone if the region were redrawn
  new MutationObserver(() => window.heard.push(announcer.textContent))
    .observe(announcer, {childList: true, characterData: true, subtree: true});
  const log = document.getElementById("chat-log");
  new MutationObserver(() => window.busy.push(log.getAttribute("aria-busy")))
    .observe(log, {attributes: true, attributeFilter: ["aria-busy"]});
}"""


def test_screen_readers_hear_each_stage_change_once_and_each_summary_whole(workspace, simulator):
    page = workspace
    page.evaluate(LISTEN)
    simulator.configure(tps=40, words=60)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(page.locator("#chat-log")).to_have_attribute("aria-busy", "true")
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    expect(page.locator("#chat-log")).to_have_attribute("aria-busy", "false")

    heard = " ".join(page.evaluate("() => window.heard"))
    for said in (
        "Problem representation: Running.",
        "Problem representation: Complete.",
        "Differential diagnosis: Queued.",
        "Differential diagnosis: Running.",
        "Differential diagnosis: Complete.",
    ):
        assert heard.count(said) == 1, (said, heard)
    assert page.evaluate("() => document.getElementById('announcer').dataset.listened") == "yes"
    busy = [state for state, _ in itertools.groupby(page.evaluate("() => window.busy"))]
    assert busy == ["true", "false"]  # read out once, when both summaries are done
    # Nothing else on the page is a live region that events redraw.
    live = page.locator("[role=status], [role=alert], [aria-live]")
    expect(live).to_have_count(3)  # the notice, the status region and the chat log
    expect(page.locator(".typing")).to_have_count(0)


def test_a_failure_is_said_once_with_what_to_do(workspace, simulator):
    page = workspace
    page.evaluate(LISTEN)
    simulator.configure(faults=["401"])
    page.locator("[data-action=run-stage][data-stage-key=summary]").first.click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "error", timeout=30_000)
    expect(page.locator("#announcer")).to_contain_text("Problem representation stopped early.")
    heard = " ".join(page.evaluate("() => window.heard"))
    assert heard.count("stopped early") == 1, heard
    assert "Retry runs the stage again." in heard
