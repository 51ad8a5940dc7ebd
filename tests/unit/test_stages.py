from workflow.stages import GROUPS, STAGES, stage_messages

FACTS = [("Chief complaint", "Fever")]


def test_the_catalogue_has_six_stages_in_three_groups():
    assert list(STAGES) == ["summary", "differential", "diagnostics", "risk", "management", "note"]
    assert {key: group.stage_keys for key, group in GROUPS.items()} == {
        "assessment": ("summary", "differential"),
        "workup": ("diagnostics", "risk"),
        "plan": ("management", "note"),
    }


def test_a_stage_only_needs_stages_that_come_before_it():
    order = list(STAGES)
    for stage in STAGES.values():
        assert all(order.index(need) < order.index(stage.key) for need in stage.needs)


def test_the_prompt_holds_the_case_the_earlier_summaries_and_the_format():
    earlier = [(STAGES["summary"], "- febrile adult")]
    prompt = stage_messages(STAGES["differential"], FACTS, earlier)[-1]["content"]
    assert "Chief complaint: Fever" in prompt
    assert "## Problem representation\n- febrile adult" in prompt
    assert "can't-miss" in prompt
    assert "<detailed>" in prompt and "<summary>" in prompt


def test_the_first_stage_has_no_earlier_conclusions():
    prompt = stage_messages(STAGES["summary"], FACTS, [])[-1]["content"]
    assert "earlier stages" not in prompt
