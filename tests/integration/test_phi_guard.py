"""Before a case or a question goes to an AI provider outside this machine, the likely
identifiers in it are marked in the form, and the clinician chooses: placeholders, or
as written. An operator can make placeholders mandatory, or refuse identifiers."""

import httpx
import pytest
from django.test import override_settings

from tests.conftest import log_in, start_server
from tests.streams import follow
from workflow.models import AuditEvent, ChatMessage, ClinicalCase, SignOff, StageRun

pytestmark = pytest.mark.django_db(transaction=True)

OUTSIDE = {"LLM_BASE_URL": "https://llm.example.org/v1", "LLM_API_KEY": "sk-test"}
CASE = {
    "age": "58",
    "sex": "male",
    "chief_complaint": "Chest pain for 2 hours",
    "history": "Patient: Maria Garcia, MRN 12345678. Wells score 4, aspirin 325 mg.",
    "vitals": "HR 104, BP 128/76",
}


@override_settings(**OUTSIDE, PHI_POLICY="")
def test_a_case_with_identifiers_asks_first_and_marks_them(alice_client):
    response = alice_client.post("/cases/new/", CASE)
    assert response.status_code == 200 and not ClinicalCase.objects.exists()
    page = response.text
    assert "What look like identifiers are marked below" in page
    assert '<mark data-phi="NAME" title="A name">Maria Garcia</mark>' in page
    assert '<mark data-phi="MRN" title="A record number">12345678</mark>' in page
    assert '<mark data-phi="NAME"' in page and "Wells</mark>" not in page
    assert 'aria-describedby="id_history_identifiers"' in page
    assert 'value="Patient: Maria Garcia' not in page  # the textarea keeps it, as typed
    assert "Patient: Maria Garcia, MRN 12345678." in page

    response = alice_client.post("/cases/new/", CASE | {"phi": "redact"})
    assert response.status_code == 302
    case = ClinicalCase.objects.get()
    assert case.history == CASE["history"]  # the case keeps what the clinician wrote
    assert case.phi_choice == "redact"
    choice = AuditEvent.objects.get(action="identifiers")
    assert choice.detail == "case: replaced with placeholders"

    edited = CASE | {"history": "Patient: Maria Garcia.", "phi": "as_written"}
    assert alice_client.post(f"/cases/{case.pk}/edit/", edited).status_code == 302
    case.refresh_from_db()
    assert case.phi_choice == "as_written"
    assert AuditEvent.objects.filter(action="identifiers").last().detail == "case: sent as written"


@override_settings(**OUTSIDE, PHI_POLICY="")
def test_a_case_without_identifiers_is_saved_without_a_question(alice_client):
    clean = CASE | {"history": "Smoker, 30 pack-years; Murphy's sign negative; 3 days ago."}
    assert alice_client.post("/cases/new/", clean).status_code == 302
    assert ClinicalCase.objects.get().phi_choice == ""
    assert not AuditEvent.objects.filter(action="identifiers").exists()


def test_a_provider_on_this_machine_is_exempt_by_default(alice_client):
    with override_settings(LLM_BASE_URL="http://127.0.0.1:8801/v1", PHI_POLICY=""):
        assert alice_client.post("/cases/new/", CASE).status_code == 302
    with override_settings(LLM_BASE_URL=None, LLM_API_KEY=None, PHI_POLICY="block"):  # the demo
        assert alice_client.post("/cases/new/", CASE).status_code == 302


@override_settings(**OUTSIDE, PHI_POLICY="block")
def test_block_refuses_identifiers_with_a_form_error(alice_client):
    response = alice_client.post("/cases/new/", CASE | {"phi": "as_written"})
    assert response.status_code == 200 and not ClinicalCase.objects.exists()
    assert "Remove what looks like a name, a record number (marked below) first." in response.text


@override_settings(**OUTSIDE, PHI_POLICY="redact")
def test_redact_makes_placeholders_mandatory(alice_client):
    assert alice_client.post("/cases/new/", CASE | {"phi": "as_written"}).status_code == 302
    assert ClinicalCase.objects.get().phi_choice == "redact"


@override_settings(**OUTSIDE, PHI_POLICY="warn")
def test_a_question_with_identifiers_asks_in_the_page_first(alice_http, alice_client, case):
    # The question is refused by the in-process check before anything starts.
    htmx = {"HX-Request": "true"}
    asked = alice_client.post(
        f"/cases/{case.pk}/chat", {"message": "Call John Smith on 555-867-5309?"}, headers=htmx
    )
    assert asked.status_code == 200
    assert "data-phi-question" in asked.text
    assert '<mark data-phi="PHONE" title="A phone number">555-867-5309</mark>' in asked.text
    assert 'form="chat-form" name="phi" value="redact"' in asked.text
    assert not ChatMessage.objects.exists()


def test_what_is_sent_is_redacted_and_the_case_keeps_what_was_written(
    case, alice, simulator, tmp_path
):
    case.history = CASE["history"] + " Daughter Aisha Khan, 07700 900123."
    case.save()
    url, server = start_server(simulator, tmp_path / "daphne.log", PHI_POLICY="redact")
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            log_in(http, alice)
            assert http.post(f"/cases/{case.pk}/stages/summary/run").status_code == 302
            follow(http, f"/cases/{case.pk}/stages/summary/events")
            http.post(f"/cases/{case.pk}/chat", data={"message": "Is Maria Garcia at risk?"})
            reply = case.chat_messages.get(role="assistant")
            follow(http, f"/cases/{case.pk}/chat/{reply.pk}/events")
    finally:
        server.terminate()
        server.wait()
    stage_prompt, chat_prompt = (
        "\n".join(m["content"] for m in r["messages"]) for r in simulator.requests()
    )
    assert "Patient: [NAME-1], MRN [MRN-1]. Wells score 4, aspirin 325 mg." in stage_prompt
    assert "Daughter [NAME-2], [PHONE-1]." in stage_prompt
    for identifier in ("Maria Garcia", "12345678", "Aisha Khan", "900123"):
        assert identifier not in stage_prompt and identifier not in chat_prompt
    assert "Is [NAME-1] at risk?" in chat_prompt  # the same person, the same placeholder
    case.refresh_from_db()
    assert "Maria Garcia" in case.history
    assert case.chat_messages.get(role="user").content == "Is Maria Garcia at risk?"


@override_settings(**OUTSIDE, PHI_POLICY="")
def test_an_edit_of_a_stage_is_guarded_too(alice_client, case):
    StageRun.objects.create(case=case, stage_key="summary", status="complete", summary="- 58M")
    edit = {"decision": "edit", "summary": "- 58M, MRN 12345678", "reasoning": "Seen."}
    asked = alice_client.post(f"/cases/{case.pk}/stages/summary/signoff", edit)
    assert asked.status_code == 400 and "data-phi-question" in asked.text
    assert '<mark data-phi="MRN" title="A record number">12345678</mark>' in asked.text
    chosen = alice_client.post(f"/cases/{case.pk}/stages/summary/signoff", edit | {"phi": "redact"})
    assert chosen.status_code == 302
    assert SignOff.objects.get().phi_choice == "redact"
    assert AuditEvent.objects.get(action="identifiers").detail == "edit: replaced with placeholders"
