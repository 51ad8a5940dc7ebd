"""What leaves the workspace for the chart: the note as plain text, the report as Markdown,
each saying what it is, who wrote it, when and where each stage stands."""

import pytest
from django.test import Client

from workflow.exports import DISCLAIMER
from workflow.models import StageRun

pytestmark = pytest.mark.django_db

NOTE = (
    "**Assessment:** 58-year-old man with chest pain, likely *acute coronary syndrome*.\n\n"
    "**Plan:**\n1. ECG within 10 minutes\n2. High-sensitivity troponin at 0 and 1-3 h\n"
)


def _run(case, key: str, status: str = "complete", **texts) -> StageRun:
    return StageRun.objects.create(case=case, stage_key=key, status=status, engine="gpt-5", **texts)


def test_the_note_is_plain_text_ready_for_the_chart(alice_client, case):
    assert alice_client.get(f"/cases/{case.pk}/export/note.txt").status_code == 404
    _run(case, "note", status="running")
    assert alice_client.get(f"/cases/{case.pk}/export/note.txt").status_code == 404  # no text
    StageRun.objects.filter(case=case).update(reasoning=NOTE, status="complete")
    _run(case, "summary", summary="- 58M, chest pain")

    response = alice_client.get(f"/cases/{case.pk}/export/note.txt")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    assert text.startswith(
        "Assessment: 58-year-old man with chest pain, likely acute coronary syndrome.\n\n"
        "Plan:\n\n1. ECG within 10 minutes\n2. High-sensitivity troponin at 0 and 1-3 h\n"
    )
    assert "*" not in text
    assert DISCLAIMER in text and "written by gpt-5" in text
    assert "Problem representation: complete, not reviewed by a clinician" in text
    assert "Differential diagnosis: not run" in text


def test_a_note_that_stopped_early_says_it_is_incomplete(alice_client, case):
    _run(case, "note", status="cancelled", reasoning="**Assessment:** 58-year-old man")
    text = alice_client.get(f"/cases/{case.pk}/export/note.txt").content.decode()
    assert text.startswith("[Incomplete: this note stopped before it was finished.]\n")
    assert "Assessment and plan note: incomplete: it stopped before it finished" in text


def test_the_report_is_a_markdown_attachment_of_the_whole_case(alice_client, case):
    _run(case, "summary", summary="- 58M with 2 h of chest pain")
    _run(case, "differential", status="stale", summary="- ACS\n- PE")
    _run(case, "note", reasoning=NOTE, summary="- note drafted")

    response = alice_client.get(f"/cases/{case.pk}/export/report.md")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="case-{case.pk}-report.md"'
    report = response.content.decode()
    assert report.startswith("# 58-year-old male: Chest pain for 2 hours\n\n_Decision support")
    assert "- **Vitals:** HR 104, BP 150/90" in report
    assert (
        "## Problem representation\n\n_Complete, not reviewed by a clinician._\n\n- 58M" in report
    )
    assert "## Differential diagnosis\n\n_Out of date, not reviewed by a clinician._" in report
    assert "## Diagnostic workup\n\n_Not run._" in report
    assert "## The note in full\n\nAssessment: 58-year-old man" in report
    assert "written by gpt-5" in report


def test_what_the_model_wrote_reaches_the_report_inert(alice_client, case):
    _run(
        case,
        "summary",
        summary="- See [this](https://evil.example/?mrn=1) ![x](https://evil.example/p.png)\n"
        '- <img src="https://evil.example/q.png"> `![y](https://evil.example/r.png)`',
    )
    report = alice_client.get(f"/cases/{case.pk}/export/report.md").content.decode()
    assert "this (https://evil.example/?mrn=1)" in report
    assert "p.png" not in report  # an image the model chose is gone
    assert "](" not in report.replace("\\](", "") and "<img" not in report.replace("\\<", "")


def test_the_print_view_holds_the_report_and_no_controls(alice_client, case):
    _run(case, "summary", summary="- 58M with 2 h of chest pain")
    page = alice_client.get(f"/cases/{case.pk}/print/").content.decode()
    assert "58M with 2 h of chest pain" in page and DISCLAIMER in page
    assert 'data-action="run-stage"' not in page


def test_no_one_else_can_export_a_case(bob, case):
    _run(case, "note", reasoning=NOTE)
    client = Client()
    client.force_login(bob)
    for url in ("export/note.txt", "export/report.md", "print/"):
        assert client.get(f"/cases/{case.pk}/{url}").status_code == 404
        assert Client().get(f"/cases/{case.pk}/{url}").status_code == 302  # to the login
