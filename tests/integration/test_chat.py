"""Follow-up questions: the reply streams, and its prompt holds the case and the chat."""

import pytest

from tests.streams import follow, squash
from workflow.models import ChatMessage

pytestmark = pytest.mark.django_db(transaction=True)


def _ask(http, case, message):
    response = http.post(f"/cases/{case.pk}/chat", data={"message": message},
                         headers={"HX-Request": "true"})  # fmt: skip
    assert response.status_code == 200
    reply = ChatMessage.objects.filter(role="assistant").latest("queued_at")
    return reply, f"/cases/{case.pk}/chat/{reply.pk}/events"


def test_a_follow_up_question_gets_a_streamed_reply(alice_http, case, simulator):
    simulator.configure(tps=100)
    reply, url = _ask(alice_http, case, "Should I give aspirin?")
    view, _ = follow(alice_http, url)
    sent = simulator.sent()[-1]["content"]
    assert "delta" in view.names
    assert view.streamed("reply", str(reply.pk)) == sent
    assert squash(view.text("reply", str(reply.pk))) == squash(sent)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", sent)
    assert 'id="chat-input"' in view.events[-1].data and "disabled" not in view.events[-1].data


def test_the_reply_carries_the_case_the_summaries_and_the_conversation(alice_http, case, simulator):
    alice_http.post(f"/cases/{case.pk}/stages/summary/run")
    follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    summary = case.stage_runs.get().summary

    _, url = _ask(alice_http, case, "First question?")
    follow(alice_http, url)
    _, url = _ask(alice_http, case, "And the second?")
    follow(alice_http, url)

    messages = simulator.requests()[-1]["messages"]
    assert messages[0]["role"] == "system"
    assert "Chest pain for 2 hours" in messages[0]["content"]
    assert summary in messages[0]["content"]
    first_reply = ChatMessage.objects.filter(role="assistant").order_by("queued_at").first()
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "First question?"),
        ("assistant", first_reply.content),
        ("user", "And the second?"),
    ]


def test_a_question_while_a_reply_streams_is_refused(alice_http, case, simulator):
    simulator.configure(tps=5)
    _ask(alice_http, case, "One?")
    response = alice_http.post(f"/cases/{case.pk}/chat", data={"message": "Two?"},
                               headers={"HX-Request": "true"})  # fmt: skip
    assert "Wait for the current reply to finish" in response.text
    assert ChatMessage.objects.filter(role="user").count() == 1


def test_an_empty_question_is_refused(alice_http, case, simulator):
    response = alice_http.post(f"/cases/{case.pk}/chat", data={"message": "   "},
                               headers={"HX-Request": "true"})  # fmt: skip
    assert response.status_code == 200
    assert "This field is required." in response.text
    assert not ChatMessage.objects.exists()


def test_a_reply_cut_off_midway_is_carried_on_without_a_click(alice_http, case, simulator):
    simulator.configure(faults=["stall@7"], tps=20)  # the notice stays readable a while
    reply, url = _ask(alice_http, case, "Should I give aspirin?")
    view, _ = follow(alice_http, url)
    reply.refresh_from_db()
    cut, carried_on = simulator.sent()
    assert (reply.status, reply.content) == ("complete", cut["content"] + carried_on["content"])
    assert view.streamed("reply", str(reply.pk)) == reply.content
    notices = [e.data for e in view.events]  # the first snapshot, or a later event
    assert any("The AI provider went silent: continuing where it stopped" in n for n in notices)


def test_the_models_separate_thinking_shows_apart_from_the_reply(alice_http, case, simulator):
    simulator.configure(faults=["thinking"])
    reply, url = _ask(alice_http, case, "Should I give aspirin?")
    view, _ = follow(alice_http, url)
    reply.refresh_from_db()
    sent = simulator.sent()[-1]
    assert reply.thinking == sent["thinking"] == "Thinking it over first."
    assert view.streamed("reply-thinking", str(reply.pk)) == reply.thinking
    assert view.text("reply-thinking", str(reply.pk)) == reply.thinking, "shown once it ends"
    assert reply.content == sent["content"] and "Thinking it over" not in reply.content
