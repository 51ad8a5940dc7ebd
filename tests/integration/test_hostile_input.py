"""No URL answers 5xx, whatever a hostile or clumsy client sends (a 2xx, a redirect or a
4xx), and none shows one clinician's case to another.

A property-based walk of every URL pattern (the app's, the login's and the admin's) with
generated junk in each path part, odd methods, malformed `Last-Event-ID` and bad
charsets, as an anonymous visitor, as the case's owner and as another clinician.
"""

import re
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflow import asyncdb
from workflow.models import ChatMessage, ClinicalCase, StageRun, WorkflowRun
from workflow.stages import STAGES

pytestmark = pytest.mark.django_db

SECRET = "Zebra-striped pancreatic pseudocyst"  # alice's case: nobody else may see it


def _routes(patterns=None, prefix="") -> list[str]:
    """Every URL pattern as a template: `<name>` where a path part is captured."""
    routes = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        pattern = str(entry.pattern)
        if isinstance(entry.pattern, RegexPattern):
            pattern = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", pattern.strip("^$").replace("\\", ""))
        else:
            pattern = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", pattern)
        if isinstance(entry, URLResolver):
            routes += _routes(entry.url_patterns, prefix + pattern)
        elif isinstance(entry, URLPattern):
            routes.append(prefix + pattern)
    return routes


ROUTES = _routes()
CASE_ROUTES = [route for route in ROUTES if route.startswith("cases/")]
JUNK = st.one_of(
    st.text(min_size=1, max_size=30),  # control characters, NUL and unicode digits included
    st.text(max_size=10).map(lambda text: f"summary{text}\x00"),
    st.sampled_from(["\x00", "x\x00", "١٢", "²", "-1", "0", "9" * 40, "..", "%", "\x7f"]),
    st.text(alphabet="0123456789", min_size=19, max_size=60),  # beyond bigint
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=41, max_size=300),  # overlong key
)
LIKELY = st.sampled_from([True, True, True, False])
METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
CHARSETS = st.sampled_from(
    ["utf-8", "UTF-8", "latin-1", "utf-16", "utf-7", "no-such-charset", "base64", "rot13", ""]
)
HEADER_TEXT = st.text(st.characters(max_codepoint=255, exclude_characters="\x00\r\n"), max_size=20)
LAST_EVENT_IDS = st.none() | HEADER_TEXT | st.sampled_from(["-1", "9" * 40, "1.5", "0x10"])


@pytest.fixture
def world(alice, bob):
    """Alice's case with a finished group run, its stages and a chat reply: every stream
    and action URL has something of hers behind it."""
    case = ClinicalCase.objects.create(owner=alice, chief_complaint=SECRET)
    group = WorkflowRun.objects.create(case=case, group_key="all", finished_at=timezone.now())
    for key in STAGES:
        StageRun.objects.create(
            case=case, workflow_run=group, stage_key=key, status="complete",
            reasoning=SECRET, summary=SECRET, inputs={},
        )  # fmt: skip
    reply = ChatMessage.objects.create(case=case, role="assistant", content=SECRET, status="error")
    return {"alice": alice, "bob": bob, "case": case, "reply": reply}


def _send(user, method, path, body=b"", content_type="text/plain", headers=None):
    """One request through Django's ASGI handler, as Daphne hands it over (the test
    client's WSGI request fails by itself on a query string with a non-text charset)."""
    client = AsyncClient(raise_request_exception=False)
    if user is not None:
        client.force_login(user)

    async def send():
        try:
            return await client.generic(
                method, path, body, content_type=content_type, headers=headers
            )
        finally:
            await asyncdb.close()  # each request has a loop of its own, and a pool with it

    return async_to_sync(send)()


def _path(route: str, values: dict[str, str]) -> str:
    return "/" + re.sub(r"<(\w+)>", lambda m: quote(values[m.group(1)], safe=""), route)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_url_answers_5xx_or_shows_another_clinicians_case(world, data):
    # Most tries go to the case URLs, where the data is, as the owner, with the method
    # the URL takes and no odd charset (each of those ends a request before the view).
    route = data.draw(st.sampled_from(CASE_ROUTES if data.draw(LIKELY) else ROUTES), label="route")
    who = data.draw(st.sampled_from(["alice", "alice", "anonymous", "bob"]), label="who")
    own = str(world["case"].pk)
    values = {}
    for name in re.findall(r"<(\w+)>", route):
        # The owner tries her case with junk in every other part (a well-formed run or chat
        # request would start a generation); the others also try the real keys.
        real = {
            "case_id": own,
            "stage_key": "summary",
            "group_key": "all",
            "message_id": str(world["reply"].pk),
        }
        if who == "alice":
            choices = st.just(own) if name == "case_id" else JUNK
        else:
            choices = st.just(real.get(name, own)) | JUNK
        values[name] = data.draw(choices, label=name)
    path = _path(route, values)
    query = data.draw(st.dictionaries(st.sampled_from(["stage", "next", "q"]), JUNK, max_size=2))
    if query:
        path += "?" + "&".join(f"{key}={quote(value, safe='')}" for key, value in query.items())
    takes = "GET" if route.endswith(("events", "/")) or "<" not in route else "POST"
    method = data.draw(st.just(takes) if data.draw(LIKELY) else METHODS, label="method")
    charset = data.draw(st.none() if data.draw(LIKELY) else CHARSETS, label="charset")
    headers = {}
    last_event_id = data.draw(LAST_EVENT_IDS, label="Last-Event-ID")
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id

    response = _send(
        world.get(who),
        method,
        path,
        b"message=" + "Zé\x00".encode("latin-1") + b"\xff\xfe",
        "application/x-www-form-urlencoded" + (f"; charset={charset}" if charset else ""),
        headers,
    )

    assert response.status_code < 500, (method, path, charset, response.status_code)
    if who != "alice":  # nothing of alice's case, not even a stream of it
        assert not response.streaming, (method, path)
        assert SECRET.encode() not in response.content, (method, path)


def test_every_case_route_is_walked():
    for name in ("run", "events", "cancel", "continue", "chat", "retry"):
        assert any(name in route for route in CASE_ROUTES), name
    assert any(route.startswith("admin/") for route in ROUTES)


@pytest.mark.parametrize(
    "path",
    [
        "/cases/{pk}/stages/summary%00/events",
        "/cases/{pk}/stages/summary%00/cancel",
        "/cases/{pk}/groups/x%00/cancel",
        "/cases/99999999999999999999999/",
        "/cases/{pk}/chat/99999999999999999999999/events",
    ],
)
def test_the_reported_nul_bytes_and_overflows_are_404(world, path):
    for method in ("GET", "POST"):
        response = _send(world["alice"], method, path.format(pk=world["case"].pk))
        assert response.status_code in (404, 405), (method, path)


@pytest.mark.parametrize("charset", ["no-such-charset", "base64", "rot13", "latin-1", "utf-16"])
def test_a_form_in_another_charset_than_utf8_is_a_400(world, charset):
    response = _send(
        world["alice"],
        "POST",
        "/cases/new/?next=x",
        b"chief_complaint=Chest+pain",
        f"application/x-www-form-urlencoded; charset={charset}",
    )
    assert response.status_code == 400
    assert "UTF-8" in response.text
    assert not world["alice"].cases.filter(chief_complaint="Chest pain").exists()
