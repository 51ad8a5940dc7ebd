"""Likely direct identifiers found in what a clinician types, and clinical text left
alone: a table of positives and of negatives that must not be flagged."""

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from workflow import phi

POSITIVES = [
    ("John Smith", "NAME", "John Smith"),
    ("Patient: Maria Garcia, 58", "NAME", "Maria Garcia"),
    ("seen with her daughter Aisha Khan", "NAME", "Aisha Khan"),
    ("Mrs. Okonkwo called", "NAME", "Okonkwo"),
    ("Is Maria Garcia at risk?", "NAME", "Maria Garcia"),
    ("John Smith's wife", "NAME", "John Smith"),
    ("MRN 12345678", "MRN", "12345678"),
    ("MRN: A1234567", "MRN", "A1234567"),
    ("medical record number 00457812", "MRN", "00457812"),
    ("Medicare number 1EG4-TE5-MK72", "ID", "1EG4-TE5-MK72"),
    ("insurance ID XYZ123456789", "ID", "XYZ123456789"),
    ("NHS number 943 476 5919", "ID", "943 476 5919"),
    ("SSN 123-45-6789", "ID", "123-45-6789"),
    ("call 555-867-5309", "PHONE", "555-867-5309"),
    ("(415) 555-0134", "PHONE", "(415) 555-0134"),
    ("+44 20 7946 0958", "PHONE", "+44 20 7946 0958"),
    ("mobile 07700 900123", "PHONE", "07700 900123"),
    ("john.smith@example.com", "EMAIL", "john.smith@example.com"),
    ("lives at 42 Elm Street, Springfield", "ADDRESS", "42 Elm Street, Springfield"),
    ("221B Baker Street", "ADDRESS", "221B Baker Street"),
    ("DOB 03/14/1956", "DOB", "03/14/1956"),
    ("born 14 March 1956", "DOB", "14 March 1956"),
    ("date of birth: 1956-03-14", "DOB", "1956-03-14"),
]

NEGATIVES = [
    "58-year-old man",
    "aspirin 325 mg",
    "metoprolol 25 mg twice daily",
    "troponin 0.04 ng/mL, repeat at 3 h",
    "HR 104, BP 128/76, RR 20, SpO2 95 % on air, T 37.2 °C",
    "chest pain for 3 days",
    "started 3 days ago, worse since 12/03",
    "admitted on 2026-11-25",
    "Wells score 4",
    "Murphy's sign positive",
    "Parkinson's disease",
    "Glasgow Coma Scale 14",
    "Kernig sign negative",
    "Austin Flint murmur",
    "Mallory Weiss tear",
    "CHA2DS2-VASc 3, HAS-BLED 2",
    "HbA1c 7.2 %",
    "creatinine 1.1 mg/dL, eGFR 68",
    "ECG: ST elevation in II, III, aVF",
    "Chest Pain Assessment",
    "platelets 250000, INR 1.1",
    "Smoker, 30 pack-years",
]


@pytest.mark.parametrize(("text", "kind", "identifier"), POSITIVES)
def test_a_likely_identifier_is_found(text, kind, identifier):
    assert [(s.kind, s.text) for s in phi.find(text)] == [(kind, identifier)]


@pytest.mark.parametrize("text", NEGATIVES)
def test_clinical_text_is_not_flagged(text):
    assert phi.find(text) == []


def test_placeholders_are_numbered_per_kind_and_kept_for_the_same_identifier():
    redact = phi.Redactor()
    assert redact("John Smith (MRN 12345678) and his wife Jane Smith") == (
        "[NAME-1] (MRN [MRN-1]) and his wife [NAME-2]"
    )
    assert redact("Call john smith's wife Jane  Smith.") == "Call john smith's wife [NAME-2]."
    assert redact("Patient: Maria Garcia. Maria reports pain; Garcia family.") == (
        "Patient: [NAME-3]. [NAME-3] reports pain; [NAME-3] family."
    )
    assert redact("Ask John.") == "Ask [NAME-1]."  # a name from an earlier text of the request


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_any_text_is_split_into_what_it_was(text):
    assert "".join(piece for piece, _ in phi.marked(text)) == text
    assert all(text[s.start : s.end] == s.text for s in phi.find(text))


@pytest.mark.parametrize(
    ("base_url", "key", "setting", "expected"),
    [
        (None, None, "", "off"),  # the demo engine sends nothing anywhere
        (None, None, "block", "off"),
        (None, "sk-x", "", "warn"),  # OpenAI's own
        ("https://llm.example.org/v1", "x", "", "warn"),
        ("http://127.0.0.1:8801/v1", None, "", "off"),
        ("http://localhost:11434/v1", None, "", "off"),
        ("http://[::1]:8000/v1", None, "", "off"),
        ("http://127.0.0.1:8801/v1", None, "redact", "redact"),  # set: every provider
        ("https://llm.example.org/v1", "x", "block", "block"),
    ],
)
def test_the_policy_follows_where_the_text_goes(base_url, key, setting, expected):
    with override_settings(LLM_BASE_URL=base_url, LLM_API_KEY=key, PHI_POLICY=setting):
        assert phi.policy() == expected


@pytest.mark.parametrize(
    ("setting", "choice", "redacted"),
    [
        ("warn", "as_written", False),  # the clinician's choice
        ("warn", "redact", True),
        ("warn", "", True),  # no one chose (written before the guard looked): placeholders
        ("redact", "as_written", True),
        ("block", "as_written", True),
    ],
)
def test_only_a_clinicians_choice_under_warn_sends_identifiers(setting, choice, redacted):
    outside = {"LLM_BASE_URL": "https://llm.example.org/v1", "LLM_API_KEY": "x"}
    with override_settings(**outside, PHI_POLICY=setting):
        assert phi.must_redact(choice) is redacted
