"""Markdown renders while it streams, one whole block at a time, as it will when finished."""

import itertools
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from workflow import fragments
from workflow.markdown import advance, finished_length, render, streaming

LINES = st.sampled_from(
    [
        "### Assessment",
        "# Plan",
        "A paragraph about the **patient**,",
        "which goes on *here*.",
        "- a finding",
        "  - a nested one",
        "* another list",
        "1. first step",
        "2. second step",
        "10) a far step",
        "| sign | value |",
        "|---|---|",
        "| HR | 120 |",
        "```",
        "    indented code",
        "> a quotation",
        "lazy continuation",
        "===",
        "---",
        "***",
        "",
        "",
        "   ",
        "<b>raw html</b>",
        "\ta tab",
    ]
)
MARKDOWN = st.lists(LINES, max_size=25).map("\n".join) | st.text(alphabet="ab #-*|`>=1.)\n\r\t")


def _chunked(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=1000)
@given(MARKDOWN)
def test_whole_blocks_render_as_they_do_within_the_whole_text(text):
    done = finished_length(text)
    assert render(text[:done]) + render(text[done:]) == render(text)


@settings(max_examples=1000)
@given(MARKDOWN, st.lists(st.integers(min_value=0), max_size=30))
def test_streamed_in_any_pieces_the_same_blocks_are_finished(text, cuts):
    tail, finished = "", []
    for piece in _chunked(text, cuts):
        done, tail = advance(tail, piece)
        finished.append(done)
    assert "".join(finished) == text[: finished_length(text)]
    assert "".join(finished) + tail == text


class _Element:
    """What the page does to a streamed element with a delta's `hx-swap-oob` swaps."""

    SWAP = re.compile(
        r'<div hx-swap-oob="(?P<how>[a-z]+):#[^"]*">(?P<html>.*?)</div>(?=<div hx-swap-oob|$)',
        re.S,
    )

    def __init__(self, html: str = "") -> None:
        self.children: list[str] = [html] if html else []

    def apply(self, event: str) -> None:
        for swap in self.SWAP.finditer(event):
            if swap["how"] == "delete":  # `#target > span`: the unfinished text written
                self.children = [c for c in self.children if not c.startswith("<span")]
            else:  # `beforeend`: rendered blocks (which hold no span), then spans
                self.children += [c for c in re.split(r"(?=<span)", swap["html"]) if c]

    @property
    def html(self) -> str:
        return "".join(self.children)


@given(MARKDOWN, st.lists(st.integers(min_value=0), max_size=30))
def test_the_page_shows_whole_blocks_rendered_and_the_rest_as_written(text, cuts):
    deltas, page = fragments.Deltas(), _Element()
    for piece in _chunked(text, cuts):
        page.apply(deltas.html("stage-run", 7, {"reasoning": piece}))
    done = finished_length(text)
    shown = re.sub(r"</?span( data-shown)?>", "", page.html)
    expected = re.sub(r"</?span>", "", streaming(text))
    assert shown == expected
    assert render(text[:done]) in page.html


def test_a_heading_is_rendered_once_its_line_ends():
    deltas = fragments.Deltas()
    assert "<h3>" not in deltas.html("stage-run", 7, {"reasoning": "### Assess"})
    event = deltas.html("stage-run", 7, {"reasoning": "ment\nA 54-year"})
    assert event.startswith(
        '<div hx-swap-oob="beforeend:#stage-run-7-reasoning"><span>ment\nA 54-year</span></div>'
        '<div hx-swap-oob="delete:#stage-run-7-reasoning > span"></div>'
    )
    assert "<h3>Assessment</h3>" in event
    assert event.endswith("<span data-shown>A 54-year</span></div>")


def test_a_paragraph_is_rendered_once_the_next_block_begins():
    deltas = fragments.Deltas()
    assert "<p>" not in deltas.html("stage-run", 7, {"reasoning": "Chest pain.\n\n"})
    assert "<p>" not in deltas.html("stage-run", 7, {"reasoning": "- ECG"})
    assert "<p>Chest pain.</p>" in deltas.html("stage-run", 7, {"reasoning": "\n"})


def test_a_list_stays_as_written_until_it_ends():
    deltas = fragments.Deltas()
    for line in ["- chest pain\n", "- dyspnoea\n", "\n"]:
        assert "<ul>" not in deltas.html("stage-run", 7, {"summary": line})
    assert "<ul>" in deltas.html("stage-run", 7, {"summary": "Next, a paragraph.\n"})


def test_raw_html_in_the_text_does_not_hold_its_blocks_back():
    # As the renderer, the block reader takes raw HTML for text: an unclosed <pre> is one.
    assert finished_length("<pre>\n\nChest pain.\n\nDyspnoea.\n") == len("<pre>\n\nChest pain.\n\n")


def test_a_huge_unfinished_block_is_no_longer_read_again():
    tail = "word " * 5_000  # one paragraph, not finished
    assert advance(tail, "more\n") == ("", tail + "more\n")


def test_the_models_own_thinking_stays_as_written():
    deltas = fragments.Deltas()
    deltas.html("stage-run", 7, {"thinking": "### Thinking\n"})
    assert "<h3>" not in deltas.html("stage-run", 7, {"thinking": "more\n"})


def test_a_snapshot_tells_the_deltas_where_the_unfinished_text_begins():
    deltas = fragments.Deltas()
    snapshot = fragments.Snapshot(3, False, "", {"stage-run-7-reasoning": "### Plan"})
    deltas.follow(snapshot)
    assert "<h3>Plan</h3>" in deltas.html("stage-run", 7, {"reasoning": "\nAspirin"})


def test_streamed_markdown_is_sanitised_like_finished_markdown():
    html = streaming("See [the guideline](https://evil.example/?mrn=1)\n\n<script>x</script>\n")
    assert "<script" not in html and "href" not in html
    assert "the guideline (https://evil.example/?mrn=1)" in html
