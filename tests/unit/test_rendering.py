"""Model text reaches the page escaped while it streams and sanitised when it is final."""

from workflow.events import delta_fragments, run_fragments
from workflow.markdown import render
from workflow.models import StageRun

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_streamed_text_is_escaped():
    run = StageRun(pk=7, case_id=1, stage_key="summary")
    html = delta_fragments(run, {"reasoning": HOSTILE + " next"})
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert 'hx-swap-oob="beforeend:#reasoning-text-7"><span>' in html


def test_a_space_at_the_start_of_a_delta_is_kept():
    html = delta_fragments(StageRun(pk=7, stage_key="summary"), {"summary": " word"})
    assert "<span> word</span>" in html


def test_final_markdown_is_sanitised():
    html = render(
        f"**Bold** and [link](javascript:alert(1))\n\n{HOSTILE}\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    assert "<strong>Bold</strong>" in html
    assert 'href="javascript' not in html
    assert "<script" not in html and "<img" not in html
    assert "<table>" in html


def test_a_finished_run_renders_markdown_and_a_running_one_plain_text(rf):
    done = StageRun(
        pk=3,
        case_id=1,
        stage_key="summary",
        status="complete",
        reasoning="**strong**",
        summary="- one",
    )
    assert "<strong>strong</strong>" in run_fragments(rf.get("/"), done)
    running = StageRun(
        pk=3, case_id=1, stage_key="summary", status="running", reasoning="**strong**"
    )
    html = run_fragments(rf.get("/"), running)
    assert "<span>**strong**</span>" in html
    assert 'class="typing"' in html
