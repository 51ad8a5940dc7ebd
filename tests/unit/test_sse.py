import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming import sse
from streaming.sse import Event, Parser
from tests.chunks import chunked

field_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"]), max_size=20
)
data_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200)
events = st.builds(
    Event,
    data=data_text,
    event=field_text.filter(bool),
    id=field_text.filter(lambda s: s == s.strip(" ")).filter(bool),
)


def _normalised(data: str) -> str:
    return data.replace("\r\n", "\n").replace("\r", "\n")


@given(st.lists(events, max_size=5), st.lists(st.integers(min_value=0), max_size=10))
def test_any_events_survive_encoding_and_any_chunking(sent, cuts):
    wire = sse.retry(1000) + "".join(
        sse.encode(e.data, event=e.event, id=e.id) + sse.comment("ping") for e in sent
    )
    parser = Parser()
    received = [event for chunk in chunked(wire, cuts) for event in parser.feed(chunk)]
    assert received == [Event(_normalised(e.data), e.event, e.id) for e in sent]
    assert parser.retry == 1000
    assert parser.comments == ["ping"] * len(sent)


def test_multi_line_data_becomes_several_data_lines():
    assert sse.encode("a\nb", event="delta", id=7) == "event: delta\nid: 7\ndata: a\ndata: b\n\n"


def test_it_parses_the_spec_examples():
    parser = Parser()
    text = "data: YHOO\ndata: +2\ndata: 10\n\n: comment\ndata:first\n\nid\ndata\n\n"
    events = parser.feed(text)
    assert [e.data for e in events] == ["YHOO\n+2\n10", "first", ""]
    assert events[-1].id == ""
    assert parser.comments == ["comment"]


def test_an_event_without_data_is_not_dispatched_but_its_id_is_kept():
    parser = Parser()
    assert parser.feed("id: 5\n\n") == []
    assert parser.feed("data: x\n\n") == [Event("x", "message", "5")]


def test_a_crlf_split_across_chunks_is_one_line_break():
    parser = Parser()
    assert parser.feed("data: a\r") == []
    assert parser.feed("\n\r\n") == [Event("a", "message", "")]


def test_retry_must_be_digits():
    parser = Parser()
    parser.feed("retry: soon\n\n")
    assert parser.retry is None


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_it_refuses_line_breaks_in_ids_and_names(bad):
    with pytest.raises(ValueError):
        sse.encode("x", id=bad)
    with pytest.raises(ValueError):
        sse.encode("x", event=bad)
