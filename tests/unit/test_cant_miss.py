"""The can't-miss diagnoses come from the differential's own part, one a line, as each line
is finished, and the lane says so when the model left them out."""

from hypothesis import given
from hypothesis import strategies as st

from workflow import fragments
from workflow.cant_miss import Lane, items
from workflow.models import StageRun

DIAGNOSES = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz '-()", min_size=1, max_size=30).filter(
        lambda name: name.strip(" -") and not name.startswith("- ")
    ),
    max_size=8,
)
MARKERS = st.sampled_from(["", "- ", "* ", "• ", "1. ", "2) ", "  - "])


@given(DIAGNOSES, st.lists(MARKERS, min_size=8, max_size=8), st.sampled_from(["\n", "\r\n"]))
def test_each_line_names_one_diagnosis_whatever_its_list_marker(names, markers, newline):
    text = newline.join(marker + name for marker, name in zip(markers, names, strict=False))
    assert items(f"\n{text}\n\n", finished=True) == [name.strip() for name in names]


@given(DIAGNOSES, st.integers(min_value=0))
def test_while_it_is_written_only_finished_lines_show_and_never_change(names, cut):
    text = "".join(f"{name}\n" for name in names)
    cut %= len(text) + 1
    shown = items(text[:cut], finished=False)
    assert shown == items(text, finished=True)[: len(shown)]
    assert len(shown) == text[:cut].count("\n") - sum(not n.strip() for n in names[: len(shown)])


def _run(status: str, cant_miss: str = "") -> StageRun:
    return StageRun(stage_key="differential", status=status, cant_miss=cant_miss)


def test_the_lane_is_absent_until_the_differential_names_something():
    assert Lane.of(None).state == "absent"
    assert Lane.of(_run("queued")).state == "absent"
    assert Lane.of(_run("running", "pulmonary emb")).state == "absent"
    assert Lane.of(_run("running", "pulmonary embolism\n")).items == ["pulmonary embolism"]


def test_a_differential_that_ended_without_naming_any_says_so():
    assert Lane.of(_run("complete")).state == "missing"
    assert Lane.of(_run("error")).state == "missing"
    stopped = Lane.of(_run("cancelled", "pulmonary embolism\naortic diss"))  # cut mid-line
    assert (stopped.state, stopped.items) == ("present", ["pulmonary embolism"])
    assert Lane.of(_run("cancelled", "aortic diss")).state == "missing"
    closed = _run("cancelled", "pulmonary embolism\naortic dissection")
    closed.summary = "- Must exclude"  # the summary began: the part was over
    assert Lane.of(closed).items == ["pulmonary embolism", "aortic dissection"]


def test_the_summary_beginning_finishes_the_last_line_of_the_part():
    deltas = fragments.Deltas()
    html = deltas.html("stage-run", 7, {"cant_miss": "pulmonary embolism\naortic dissection"})
    assert "pulmonary embolism" in html and "aortic dissection" not in html
    assert "aortic dissection</strong>" in deltas.html("stage-run", 7, {"summary": "- S"})
    assert "cant-miss" not in deltas.html("stage-run", 7, {"summary": " more"})
