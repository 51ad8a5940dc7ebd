"""The differential's can't-miss part reaches the lane line by line, through the real SDK."""

import re

import pytest

from tests.llm_simulator import CANT_MISS
from tests.streams import follow
from workflow.models import StageRun

pytestmark = pytest.mark.django_db(transaction=True)

ITEM = re.compile(r"<strong data-cant-miss-item>([^<]*)</strong>")


def _run_assessment(http, case) -> str:
    response = http.post(f"/cases/{case.pk}/groups/assessment/run", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return f"/cases/{case.pk}/groups/assessment/events"


def _lanes(view) -> list[tuple[str, str, list[str]]]:
    """(event, lane state, items) of each event that redraws the lane."""
    lanes = []
    for event in view.events:
        if lane := re.search(r'<section id="cant-miss".*?</section>', event.data, re.S):
            state = re.search(r'data-cant-miss="(\w+)"', lane[0])
            lanes.append((event.event, state[1] if state else "", ITEM.findall(lane[0])))
    return lanes


def test_the_lane_names_each_diagnosis_once_its_line_is_written(alice_http, case, simulator):
    simulator.configure(tps=200, words=30)
    view, _ = follow(alice_http, _run_assessment(alice_http, case))

    differential = StageRun.objects.get(case=case, stage_key="differential")
    asked = simulator.requests()[-1]["messages"][-1]["content"]
    assert "<cant_miss>…</cant_miss>" in asked
    assert differential.cant_miss == "".join(f"{name}\n" for name in CANT_MISS)
    assert "pulmonary embolism" not in differential.reasoning + differential.summary
    lanes = _lanes(view)
    assert lanes[0] == ("snapshot", "", [])  # nothing before the differential names any
    streamed = [items for event, _, items in lanes if event == "delta"]
    assert streamed, "the lane filled while the differential streamed"
    assert all(items == list(CANT_MISS[: len(items)]) for items in streamed)  # line by line
    assert [len(items) for items in streamed] == sorted({len(items) for items in streamed})
    assert streamed[-1] == list(CANT_MISS)
    assert lanes[-1] == ("done", "present", list(CANT_MISS))


def test_continue_keeps_what_the_part_named(case):
    StageRun.objects.create(case=case, stage_key="summary", status="complete", summary="- S")
    StageRun.objects.create(
        case=case,
        stage_key="differential",
        status="interrupted",
        reasoning="Reasoning.",
        cant_miss="pulmonary embolism\n",
        inputs={},
    )
    continued = case.continue_stage_run("differential")
    assert continued.cant_miss == "pulmonary embolism\n"
    assert "<cant_miss>pulmonary embolism\n" in continued.continued_from.raw_output()


def test_a_differential_without_the_part_says_so(alice_http, case, simulator):
    simulator.configure(tps=200, words=30, faults=["", "nocantmiss"])
    view, _ = follow(alice_http, _run_assessment(alice_http, case))

    assert _lanes(view)[-1] == ("done", "missing", [])
    page = alice_http.get(f"/cases/{case.pk}/").text
    assert "did not name its can't-miss diagnoses" in page
