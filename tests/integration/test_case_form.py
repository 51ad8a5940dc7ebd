import pytest

from workflow.models import ClinicalCase

pytestmark = pytest.mark.django_db


def test_it_creates_a_case_and_opens_its_workspace(alice_client, alice):
    response = alice_client.post(
        "/cases/new/",
        {"age": "34", "sex": "female", "chief_complaint": "  Sudden severe headache  "},
    )
    case = ClinicalCase.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/cases/{case.pk}/"
    assert (case.owner, case.age, case.chief_complaint) == (alice, 34, "Sudden severe headache")
    page = alice_client.get(response["Location"]).text
    assert "34-year-old female: Sudden severe headache" in page
    for key in ("summary", "differential", "diagnostics", "risk", "management", "note"):
        assert f'data-stage-key="{key}" data-status="idle"' in page


def test_it_requires_the_chief_complaint(alice_client):
    response = alice_client.post("/cases/new/", {"age": "34", "sex": "female", "history": "x"})
    assert response.status_code == 200
    assert "This field is required." in response.text
    assert 'value="34"' in response.text  # what was typed is kept
    assert "x</textarea>" in response.text
    assert not ClinicalCase.objects.exists()


def test_it_rejects_an_impossible_age(alice_client):
    response = alice_client.post("/cases/new/", {"age": "400", "chief_complaint": "Fever"})
    assert "Enter an age in years, from 0 to 130." in response.text
    assert not ClinicalCase.objects.exists()


def test_it_rejects_an_unknown_sex(alice_client):
    response = alice_client.post("/cases/new/", {"sex": "robot", "chief_complaint": "Fever"})
    assert response.status_code == 200
    assert "Select a valid choice." in response.text
    assert not ClinicalCase.objects.exists()
