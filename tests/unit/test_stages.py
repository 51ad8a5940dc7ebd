from hypothesis import given
from hypothesis import strategies as st

from workflow.stages import (
    GROUPS,
    HISTORY_CHARACTERS,
    RUN_ALL,
    STAGES,
    chat_messages,
    newest,
    stage_messages,
    to_run,
)

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


TURNS = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=60)), min_size=1
)


@given(turns=TURNS, characters=st.integers(0, 300))
def test_the_history_keeps_the_newest_turns_that_fit_and_always_the_question(turns, characters):
    kept = newest(turns, characters)
    assert kept == turns[len(turns) - len(kept) :]  # the newest, in order
    assert kept[-1] == turns[-1]
    assert len(kept) == 1 or sum(len(text) for _, text in kept) <= characters
    cut = len(turns) - len(kept)
    if cut:  # starts with a question, and the next older history that does would not fit
        assert len(kept) == 1 or kept[0][0] == "user"
        older = [n for n in range(cut) if turns[n][0] == "user"]
        if older:
            assert sum(len(text) for _, text in turns[older[-1] :]) > characters


def test_a_long_conversation_is_cut_from_its_oldest_end_and_the_prompt_says_so():
    conversation = [("user", f"question {n} " + "x" * 4000) for n in range(20)]
    messages = chat_messages(FACTS, [], conversation)
    sent = messages[1:]
    assert sum(len(m["content"]) for m in sent) <= HISTORY_CHARACTERS
    assert sent[-1]["content"].startswith("question 19 ")
    left_out = len(conversation) - len(sent)
    assert (
        f"The oldest {left_out} messages of this conversation are left out"
        in messages[0]["content"]
    )


def test_a_short_conversation_is_sent_whole_without_a_note():
    messages = chat_messages(
        FACTS, [], [("user", "Why?"), ("assistant", "Because."), ("user", "Ok")]
    )
    assert [m["content"] for m in messages[1:]] == ["Why?", "Because.", "Ok"]
    assert "left out" not in messages[0]["content"]


KEYS = list(STAGES)


@given(
    asked=st.lists(st.sampled_from(KEYS), min_size=1, unique=True),
    complete=st.sets(st.sampled_from(KEYS)),
    again=st.booleans(),
)
def test_a_run_takes_what_it_needs_first_and_skips_what_is_done(asked, complete, again):
    planned = to_run(asked, complete, again=again)
    assert list(planned) == [key for key in KEYS if key in planned]  # catalogue order
    for key in planned:  # everything a planned stage needs is complete or runs before it
        for need in STAGES[key].needs:
            assert need in complete or planned.index(need) < planned.index(key)
    for key in asked:
        assert (key in planned) == (key not in complete or again)
    for key in set(planned) - set(asked):
        assert key not in complete  # a prerequisite runs only when it is not complete


def test_running_management_alone_first_runs_every_stage_it_builds_on():
    assert to_run(["management"], set(), again=True) == (
        "summary", "differential", "risk", "management",
    )  # fmt: skip
    assert to_run(["management"], {"summary", "differential"}, again=True) == (
        "risk", "management",
    )  # fmt: skip
    assert to_run(RUN_ALL.stage_keys, set(STAGES), again=False) == ()
