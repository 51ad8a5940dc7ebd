from hypothesis import given
from hypothesis import strategies as st

from streaming.router import CANT_MISS, REASONING, SUMMARY, THINKING, ContentRouter
from tests.chunks import chunked

pieces = st.lists(
    st.one_of(
        st.sampled_from(
            ["<detailed>", "</detailed>", "<cant_miss>", "</cant_miss>", "<summary>", "</summary>"]
        ),
        st.sampled_from(["<SUMMARY>", "<Cant_Miss>"]),
        st.sampled_from(["<", "<b>", "a < b", "<det", " ", "\n"]),
        st.text(max_size=15),
    ),
    max_size=20,
)


def route(chunks: list[str]) -> list[tuple[str, str]]:
    router = ContentRouter()
    out = []
    for chunk in chunks:
        out.extend(router.feed(chunk))
    out.extend(router.close())
    merged: list[tuple[str, str]] = []
    for channel, text in out:
        if merged and merged[-1][0] == channel:
            merged[-1] = (channel, merged[-1][1] + text)
        else:
            merged.append((channel, text))
    return merged


@given(pieces, st.lists(st.integers(min_value=0), max_size=30))
def test_any_chunking_routes_the_same(parts, cuts):
    text = "".join(parts)
    assert route(chunked(text, cuts)) == route([text])


@given(st.text(max_size=50).filter(lambda s: "<" not in s))
def test_text_without_tags_is_all_reasoning(text):
    assert "".join(t for _, t in route([text])) == text.lstrip()
    assert {c for c, _ in route([text])} <= {REASONING}


def test_it_splits_reasoning_from_summary_with_tags_cut_anywhere():
    chunks = [
        "Intro <det",
        "ailed>\nThe patient",
        " is ill.</deta",
        "iled>\n<sum",
        "mary>\n- ACS",
        "</summary>",
    ]
    assert route(chunks) == [(REASONING, "Intro The patient is ill."), (SUMMARY, "- ACS")]


def test_a_less_than_sign_that_is_no_tag_is_kept():
    assert route(["<detailed>K < 3.5 and <b>bold</b></detailed>"]) == [
        (REASONING, "K < 3.5 and <b>bold</b>")
    ]


def test_a_missing_summary_leaves_only_reasoning():
    assert route(["<detailed>all reasoning"]) == [(REASONING, "all reasoning")]


def test_a_held_back_partial_tag_is_released_at_the_end():
    assert route(["<detailed>ends with <sum"]) == [(REASONING, "ends with <sum")]


def test_thinking_goes_to_its_own_channel():
    router = ContentRouter()
    assert router.feed("hmm", thinking=True) == [(THINKING, "hmm")]
    assert router.feed("", thinking=True) == []


def test_the_cant_miss_part_goes_to_its_own_channel_with_its_tags_cut_anywhere():
    text = "<detailed>Reasoning.</detailed>\n<cant_miss>\nPE\nACS\n</cant_miss>\n"
    text += "<summary>- S</summary>"
    for cut in range(len(text)):
        assert route([text[:cut], text[cut:]]) == [
            (REASONING, "Reasoning."),
            (CANT_MISS, "PE\nACS\n"),
            (SUMMARY, "- S"),
        ]
