"""A clinician signs off each stage: accepts it, corrects it or rejects it. What they
corrected is what later prompts, the chat and the exports use; the record of decisions
is kept by Postgres as written, and says who decided and when."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tests.streams import follow
from workflow.models import AuditEvent, ClinicalCase, SignOff, StageRun

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(
        "alice", password="alice-password-1", first_name="Alice", last_name="Adams"
    )


def _run(case, key: str, status: str = "complete", **texts) -> StageRun:
    texts = {"reasoning": f"The model's {key} reasoning.", "summary": f"- {key} summary"} | texts
    ended = {} if status in ("queued", "running") else {"finished_at": timezone.now()}
    return StageRun.objects.create(
        case=case, stage_key=key, status=status, engine="gpt-5", **ended, **texts
    )


def _signoff(client, case, key: str, **data):
    return client.post(f"/cases/{case.pk}/stages/{key}/signoff", data)


def _stage(page: str, key: str) -> str:
    """The stepper item of stage `key`, as the page renders it."""
    start = page.index(f'data-stage-key="{key}"')
    return page[start : page.index(">", start)]


def test_accepting_a_stage_shows_who_accepted_it_and_when(alice_client, case):
    _run(case, "summary")
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-signoff="none"' in _stage(page, "summary")
    assert 'data-action="accept" data-stage-key="summary"' in page

    response = _signoff(alice_client, case, "summary", decision="accept")
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{case.pk}/?stage=summary"

    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-signoff="accepted"' in _stage(page, "summary")
    assert "<strong>Accepted</strong> by Alice Adams" in page
    assert 'data-action="accept" data-stage-key="summary"' not in page  # done
    record = SignOff.objects.get()
    assert (record.decision, record.summary, record.decided_by.username) == (
        "accepted",
        "- summary summary",  # the exact text accepted
        "alice",
    )
    assert AuditEvent.objects.filter(action="signed_off", detail="summary: accepted").count() == 1
    report = alice_client.get(f"/cases/{case.pk}/export/report.md").text
    assert "_Complete, accepted by Alice Adams on " in report


def test_a_clinician_without_a_full_name_is_named_by_username(case, django_user_model, client):
    bob = django_user_model.objects.create_user("bob", password="bob-password-1")
    case.owner = bob
    case.save()
    client.force_login(bob)
    _run(case, "summary")
    _signoff(client, case, "summary", decision="accept")
    assert "<strong>Accepted</strong> by bob" in client.get(f"/cases/{case.pk}/").text


def test_an_edit_is_what_later_prompts_the_chat_and_exports_use(
    alice_http, alice_client, case, simulator
):
    summary = _run(case, "summary")
    _run(case, "differential", inputs={"summary": summary.pk})
    edit_page = alice_client.get(f"/cases/{case.pk}/stages/summary/signoff")
    assert edit_page.status_code == 200
    assert "- summary summary</textarea>" in edit_page.text  # the text as it stands

    response = _signoff(
        alice_client,
        case,
        "summary",
        decision="edit",
        summary="- 58M, crushing chest pain radiating to the jaw\r\n- diaphoretic",
        reasoning="Corrected by the clinician: the pain radiates to the jaw.",
    )
    assert response.status_code == 302

    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-signoff="edited"' in _stage(page, "summary")
    assert 'data-stage-key="differential" data-status="stale"' in page
    assert "Problem representation was edited by a clinician after this was written." in page
    assert "radiating to the jaw</li>" in page
    assert "<p>The model's summary reasoning.</p>" in page  # the original, still readable
    assert SignOff.objects.get().summary.endswith("jaw\n- diaphoretic")  # no CRLF kept

    alice_http.post(f"/cases/{case.pk}/stages/differential/run", headers=HTMX)
    follow(alice_http, f"/cases/{case.pk}/stages/differential/events")
    prompt = simulator.requests()[-1]["messages"][-1]["content"]
    assert "crushing chest pain radiating to the jaw" in prompt
    assert "- summary summary" not in prompt

    alice_http.post(f"/cases/{case.pk}/chat", data={"message": "Why?"}, headers=HTMX)
    reply = case.chat_messages.get(role="assistant")
    follow(alice_http, f"/cases/{case.pk}/chat/{reply.pk}/events")
    asked = "\n".join(m["content"] for m in simulator.requests()[-1]["messages"])
    assert "crushing chest pain radiating to the jaw" in asked

    report = alice_client.get(f"/cases/{case.pk}/export/report.md").text
    assert "- 58M, crushing chest pain radiating to the jaw" in report
    assert "_Complete, edited by Alice Adams on " in report


def test_an_edit_that_changes_nothing_is_refused(alice_client, case):
    _run(case, "summary", summary="- 58M")
    response = _signoff(
        alice_client,
        case,
        "summary",
        decision="edit",
        summary="- 58M\r\n",
        reasoning="The model's summary reasoning.",
    )
    assert response.status_code == 400
    assert "Nothing was changed: accept problem representation as it is" in response.text
    assert not SignOff.objects.exists()


def test_rejecting_a_stage_keeps_the_reason_and_later_stages_do_not_build_on_it(alice_client, case):
    summary = _run(case, "summary")
    _run(case, "differential", inputs={"summary": summary.pk})
    response = _signoff(
        alice_client, case, "summary", decision="reject", reason="Wrong patient's vitals."
    )
    assert response.status_code == 302
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-signoff="rejected"' in _stage(page, "summary")
    assert "<strong>Rejected</strong> by Alice Adams" in page
    assert "Why: Wrong patient&#x27;s vitals." in page
    assert "Problem representation was rejected by a clinician after this was written." in page
    assert "Run 2 stages: problem representation, differential diagnosis" in page
    assert case.completed_runs() == []


def test_text_that_stopped_early_is_marked_and_not_accepted_without_an_edit(alice_client, case):
    _run(case, "summary", status="interrupted", summary="- 58M with chest pa")
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert page.count('<span class="badge incomplete">incomplete</span>') == 2  # both panels
    assert 'data-action="accept"' not in page
    assert "Incomplete: edit it to complete it before you accept it." in page

    refused = _signoff(alice_client, case, "summary", decision="accept")
    assert refused.status_code == 400
    assert "stopped before it was finished: edit it to complete it" in refused.text
    htmx_refused = alice_client.post(
        f"/cases/{case.pk}/stages/summary/signoff", {"decision": "accept"}, headers=HTMX
    )
    assert "stopped before it was finished" in htmx_refused.text
    report = alice_client.get(f"/cases/{case.pk}/export/report.md").text
    assert "_Incomplete: it stopped before it finished, not reviewed by a clinician._" in report

    _signoff(
        alice_client,
        case,
        "summary",
        decision="edit",
        summary="- 58M with chest pain for 2 hours",
        reasoning="The model's summary reasoning, completed.",
    )
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert "badge incomplete" not in page  # a clinician completed it
    assert [run.stage_key for run in case.completed_runs()] == ["summary"]
    assert _signoff(alice_client, case, "summary", decision="accept").status_code == 302


def test_a_case_edit_makes_the_sign_off_stale_with_the_stage(alice_client, case):
    _run(case, "summary")
    _signoff(alice_client, case, "summary", decision="accept")
    case.mark_all_stale()
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-status="stale"' in _stage(page, "summary")
    assert 'data-signoff="accepted"' in _stage(page, "summary")
    assert "before it went out of date" in page
    refused = _signoff(alice_client, case, "summary", decision="accept")
    assert "is out of date: run it again" in refused.text
    assert SignOff.objects.count() == 1


def test_a_sign_off_waits_for_the_stages_that_build_on_it(alice_client, case):
    _run(case, "summary")
    _run(case, "differential", status="running")
    refused = _signoff(alice_client, case, "summary", decision="reject")
    assert "Stages that build on problem representation are being written" in refused.text
    assert _signoff(alice_client, case, "summary", decision="accept").status_code == 302


def test_the_record_of_decisions_cannot_be_changed_or_deleted_and_outlives_the_case(
    alice_client, case
):
    _run(case, "summary")
    _signoff(alice_client, case, "summary", decision="accept")
    changes = ("UPDATE workflow_signoff SET decision = 'edited'", "DELETE FROM workflow_signoff")
    for statement in changes:
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)

    ClinicalCase.objects.filter(pk=case.pk).delete()
    assert SignOff.objects.get().decision == "accepted"


def test_another_clinician_cannot_see_or_sign_off_the_case(case, client, django_user_model):
    _run(case, "summary")
    bob = django_user_model.objects.create_user("bob", password="bob-password-1")
    client.force_login(bob)
    assert client.get(f"/cases/{case.pk}/stages/summary/signoff").status_code == 404
    assert _signoff(client, case, "summary", decision="accept").status_code == 404
    assert not SignOff.objects.exists()


def test_bad_input_is_a_clear_error(alice_client, case):
    assert _signoff(alice_client, case, "summary", decision="accept").status_code == 404  # not run
    assert _signoff(alice_client, case, "nope", decision="accept").status_code == 404
    _run(case, "summary")
    wrong = _signoff(alice_client, case, "summary", decision="approve")
    assert wrong.status_code == 400 and "Select a valid choice" in wrong.text
    empty = _signoff(alice_client, case, "summary", decision="edit", summary="", reasoning="x")
    assert empty.status_code == 400
    assert "Write the corrected text, or reject the stage." in empty.text
    assert not SignOff.objects.exists()


def test_a_decision_is_on_the_run_the_clinician_saw(alice_client, case):
    seen = _run(case, "summary")
    _run(case, "summary", summary="- a newer run")
    refused = _signoff(alice_client, case, "summary", decision="accept", run=seen.pk)
    assert "was run again since: decide on the new text." in refused.text
    assert not SignOff.objects.exists()


def test_a_stage_a_clinician_completed_goes_stale_and_is_not_continued(alice_client, case):
    _run(case, "summary", status="cancelled", summary="")
    completed = {"summary": "- 58M, chest pain", "reasoning": "Completed by the clinician."}
    _signoff(alice_client, case, "summary", decision="edit", **completed)
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert 'data-action="continue"' not in page  # the model's half would undo the edit
    refused = alice_client.post(f"/cases/{case.pk}/stages/summary/continue")
    assert refused.status_code == 302 and StageRun.objects.count() == 1

    case.mark_all_stale()  # the case was edited
    assert StageRun.objects.get().status == "stale"


def test_the_lane_says_when_its_differential_was_rejected(alice_client, case):
    _run(case, "differential", cant_miss="Pulmonary embolism\nAortic dissection\n")
    _signoff(alice_client, case, "differential", decision="reject")
    page = alice_client.get(f"/cases/{case.pk}/").text
    assert '<span class="badge incomplete">rejected by a clinician</span>' in page
    report = alice_client.get(f"/cases/{case.pk}/export/report.md").text
    assert "(from a differential a clinician rejected)" in report


def test_a_reason_reaches_the_report_inert(alice_client, case):
    _run(case, "summary")
    reason = "See [here](https://evil.example/?mrn=1)\n<img src=x>"
    _signoff(alice_client, case, "summary", decision="reject", reason=reason)
    report = alice_client.get(f"/cases/{case.pk}/export/report.md").text
    assert "](https://evil" not in report
    assert "<img" not in report.replace("\\<img", "")  # escaped: shown as text
    assert "here (https://evil.example/?mrn=1)" in report
