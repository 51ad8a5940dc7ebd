"""At the end of a consultation: the note copied for the chart, the report downloaded, and
the report printed in full without controls, in Chromium."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_note_is_copied_the_report_downloaded_and_printed(workspace, simulator, server):
    page = workspace
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    copy = page.get_by_role("button", name="Copy note")
    copy.click()
    expect(page.locator("#notice")).to_have_text(
        "There is no note yet: run the assessment and plan note first."
    )

    simulator.configure(tps=1000, words=40)
    page.get_by_role("button", name="Run all stages").click()
    step = page.locator("li[data-stage-key=note]")
    expect(step).to_have_attribute("data-status", "complete", timeout=60_000)
    copy.click()
    expect(page.locator("#notice")).to_have_text("Note copied: paste it into the chart.")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    note = page.request.get(page.url + "export/note.txt").text()
    assert copied == note and "Decision support — not a diagnosis." in copied

    with page.expect_download() as download:
        page.get_by_role("link", name="Download report").click()
    report = Path(download.value.path()).read_text()
    assert download.value.suggested_filename.endswith("-report.md")
    assert report.startswith("# 58-year-old male: Chest pain for 2 hours")
    assert report.count("Complete, not reviewed by a clinician") == 6

    page.emulate_media(media="print")  # the workspace itself prints whole, without controls
    expect(page.get_by_role("button", name="Run all stages")).to_be_hidden()
    assert (
        page.locator("#reasoning-panel").evaluate("el => getComputedStyle(el).maxHeight") == "none"
    )

    page.emulate_media(media="screen")
    page.get_by_role("link", name="Print").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "58-year-old male: Chest pain for 2 hours"
    )
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.locator(".report-stage")).to_have_count(7)  # six stages and the note in full
    expect(page.locator(".provenance")).to_contain_text("written by simulator")
    expect(page.locator(".must-not-miss")).to_contain_text("Must not miss: pulmonary embolism")

    page.emulate_media(media="screen")
    page.go_back()
    page.context.clear_cookies()  # the session ended
    copy.click()
    expect(page.locator("#notice")).to_have_text(
        "You were logged out: log in again, then copy the note."
    )


def test_the_case_lists_its_activity(workspace, simulator):
    page = workspace
    simulator.configure(tps=1000, words=20)
    page.get_by_role("button", name="Run problem representation").click()
    expect(page.locator("li[data-stage-key=summary]")).to_have_attribute("data-status", "complete")
    page.reload()
    page.get_by_text("Activity", exact=True).click()
    rows = page.locator("[data-activity]")
    expect(rows).to_have_count(3)  # two page loads and a run, newest first
    expect(rows.nth(1)).to_contain_text("alice")
    expect(rows.nth(1)).to_contain_text("Ran · summary")
    expect(page.locator("[data-activity=viewed]")).to_have_count(2)
