"""Model text reaches the page escaped while it streams and sanitised when it is final."""

import re
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from workflow import fragments, workspace
from workflow.markdown import plain_text, render, render_finished
from workflow.models import StageRun
from workflow.templatetags.clinical import as_markdown

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _delta(texts: dict[str, str]) -> str:
    return fragments.Deltas().html("stage-run", 7, texts)


class _Appends(HTMLParser):
    """What a page does with a delta: (swap target, text) for each appended span."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self.elements: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append(tag)
        if tag == "div":
            self.found.append((dict(attrs)["hx-swap-oob"], ""))

    def handle_data(self, data):
        target, text = self.found[-1]
        self.found[-1] = (target, text + data)


CHANNELS = st.sampled_from(["reasoning", "summary", "thinking"])


ONE_LINE = st.text(min_size=1).filter(lambda text: not re.search(r"[\r\n]", text))


@given(st.dictionaries(CHANNELS, ONE_LINE, min_size=1))
def test_a_delta_appends_exactly_the_text_to_each_channel(texts):
    page = _Appends()
    page.feed(_delta(texts))
    page.close()
    assert page.found == [(f"beforeend:#stage-run-7-{c}", text) for c, text in texts.items()]
    assert page.elements == ["div", "span"] * len(texts)  # the text made no element


def test_streamed_text_is_escaped():
    html = _delta({"reasoning": HOSTILE + " next"})
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert 'hx-swap-oob="beforeend:#stage-run-7-reasoning"><span>' in html


def test_a_space_at_the_start_of_a_delta_is_kept():
    assert "<span> word</span>" in _delta({"summary": " word"})


def test_final_markdown_is_sanitised():
    html = render(
        f"**Bold** and [link](javascript:alert(1))\n\n{HOSTILE}\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    assert "<strong>Bold</strong>" in html
    assert 'href="javascript' not in html
    assert "<script" not in html and "<img" not in html
    assert "<table>" in html


def test_final_markdown_loads_no_image_the_model_chose():
    html = render("Findings ![chart](https://tracker.example/pixel.png?mrn=123) noted")
    assert "<img" not in html and "tracker.example" not in html
    assert "Findings" in html and "noted" in html


def test_links_in_final_markdown_are_inert_and_show_their_target():
    html = render(
        "See [the guideline](https://evil.example/?mrn=123), <https://evil.example/auto>, "
        'https://evil.example/bare and <a href="https://evil.example/raw">raw</a>'
    )
    assert not re.search(r"<[^>]*href", html)  # no element links anywhere
    assert "the guideline (https://evil.example/?mrn=123)" in html
    assert "https://evil.example/auto" in html and "https://evil.example/bare" in html
    assert "&lt;a href" in html  # raw HTML is shown, not obeyed


def _section(rf, run: StageRun) -> str:
    context = {"section": workspace.Section(run.stage, run), "run": run, "stage": run.stage}
    return fragments.swaps(rf.get("/"), ["reasoning-section", "summary-bubble"], context)


def test_a_finished_run_renders_markdown_and_a_running_one_its_unfinished_block_as_written(rf):
    done = StageRun(pk=3, case_id=1, stage_key="summary", status="complete", reasoning="**a**")
    assert "<strong>a</strong>" in _section(rf, done)
    running = StageRun(
        pk=3, case_id=1, stage_key="summary", status="running", reasoning="**a**\n\n**b**\n"
    )
    html = _section(rf, running)
    assert "<strong>a</strong>" in html and "<span>**b**\n</span>" in html
    assert 'class="typing"' in html


def test_a_finished_run_rendered_again_shows_its_text_as_it_is_now(rf):
    run = StageRun(pk=3, case_id=1, stage_key="summary", status="complete", reasoning="**a**")
    assert "<strong>a</strong>" in _section(rf, run)
    run.reasoning = "**b** (edited)"
    html = _section(rf, run)
    assert "<strong>b</strong> (edited)" in html and "<strong>a</strong>" not in html


def test_a_finished_run_without_text_renders_empty():
    assert as_markdown(None) == as_markdown("") == ""


@given(st.lists(st.text(max_size=200), min_size=1, max_size=5))
def test_finished_text_renders_from_memory_as_it_would_afresh(texts):
    for text in [*texts, *reversed(texts)]:  # each again, after others
        assert render_finished(text) == render(text)


WORDS = st.text(alphabet="abcdefghij", min_size=1, max_size=8)


@given(st.lists(st.lists(WORDS, min_size=1, max_size=6), min_size=1, max_size=6), st.data())
def test_plain_text_keeps_every_word_in_order_and_no_markdown(blocks, data):
    shapes = ["{}", "### {}", "**{}**", "- {}", "1. {}", "*{}*", "> {}"]
    text = "\n\n".join(data.draw(st.sampled_from(shapes)).format(" ".join(b)) for b in blocks)
    plain = plain_text(text)
    markers = re.compile(r"-|\d+\.")
    assert [w for w in plain.split() if not markers.fullmatch(w)] == [w for b in blocks for w in b]
    assert "**" not in plain and "###" not in plain and not re.search(r"(^|\s)\*\w", plain)


def test_plain_text_is_what_a_chart_field_takes():
    note = "**Assessment:** 58M, *likely* ACS.\n\n**Plan:**\n1. ECG\n2. Troponin\n   - at 0 h\n"
    assert plain_text(note) == (
        "Assessment: 58M, likely ACS.\n\nPlan:\n\n1. ECG\n2. Troponin\n  - at 0 h\n"
    )
    assert (
        plain_text("See [NICE](https://nice.org.uk/cg95).")
        == "See NICE (https://nice.org.uk/cg95).\n"
    )
    assert plain_text("| HR | 120 |\n|---|---|\n| BP | 90/60 |") == "HR | 120\nBP | 90/60\n"
