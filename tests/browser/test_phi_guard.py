"""In Chromium, against a server whose policy is to warn (as for a provider off this
machine): the identifiers a clinician typed are marked before anything is sent, they
choose placeholders or as written, and what the provider receives follows the choice."""

import pytest
from playwright.sync_api import expect

from tests.browser.accessibility import violations
from tests.conftest import start_server, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def warning_server(simulator, tmp_path):
    url, process = start_server(simulator, tmp_path / "daphne.log", PHI_POLICY="warn")
    yield url
    stop_process(process)


def test_identifiers_are_marked_and_the_choice_decides_what_is_sent(
    page, alice, simulator, warning_server
):
    page.goto(warning_server + "/")
    log_in_at(page)
    page.goto(warning_server + "/cases/new/")
    page.get_by_label("Chief complaint").fill("Chest pain for 2 hours")
    page.get_by_label("History").fill("Patient: Maria Garcia, MRN 12345678. Wells score 4.")
    page.get_by_role("button", name="Create case").click()

    expect(page.locator("[data-phi-question]")).to_contain_text("What look like identifiers")
    marks = page.locator("#id_history_identifiers mark")
    expect(marks).to_have_text(["Maria Garcia", "12345678"])
    expect(page.get_by_label("History")).to_have_value(
        "Patient: Maria Garcia, MRN 12345678. Wells score 4."
    )
    assert violations(page) == []
    page.get_by_role("button", name="Replace them with placeholders").click()

    simulator.configure(tps=1000, words=20)
    page.get_by_role("button", name="Run problem representation").click()
    step = page.locator("li[data-stage-key=summary]")
    expect(step).to_have_attribute("data-status", "complete")
    sent = simulator.requests()[-1]["messages"][-1]["content"]
    assert "Patient: [NAME-1], MRN [MRN-1]. Wells score 4." in sent
    page.get_by_text("Case details").click()
    expect(page.locator(".facts")).to_contain_text("Patient: Maria Garcia, MRN 12345678.")

    page.get_by_label("Ask a follow-up question").fill("Should I call Dr. Okafor?")
    page.get_by_role("button", name="Send").click()
    question = page.locator("#notice [data-phi-question]")
    expect(question.locator("mark")).to_have_text(["Okafor"])
    assert violations(page) == []
    question.get_by_role("button", name="Send as written").click()
    expect(page.locator("[data-chat-message][data-role=user]")).to_have_text(
        "Should I call Dr. Okafor?"
    )
    expect(page.locator("[data-chat-message][data-role=assistant]").last).to_have_attribute(
        "data-status", "complete"
    )
    asked = "\n".join(m["content"] for m in simulator.requests()[-1]["messages"])
    assert "Should I call Dr. Okafor?" in asked  # as written, as chosen
    assert "Maria Garcia" not in asked  # the case still goes with placeholders

    page.reload()
    page.get_by_text("Activity", exact=True).click()
    choices = page.locator("[data-activity=identifiers]")
    expect(choices).to_have_count(2)
    expect(choices.first).to_contain_text("question: sent as written")
    expect(choices.last).to_contain_text("case: replaced with placeholders")


def log_in_at(page) -> None:
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your cases")).to_be_visible()
