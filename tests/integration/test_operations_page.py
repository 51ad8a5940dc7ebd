"""The staff's Operations page: the last 24 hours from Postgres, drawn as SVG."""

import re
from datetime import timedelta
from html import unescape

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from tests.conftest import log_in, wait_until
from workflow.models import ChatMessage, StageRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def _run(case, minutes_ago, *, first_token, duration, status="complete", message=""):
    start = timezone.now() - timedelta(minutes=minutes_ago)
    return StageRun.objects.create(
        case=case, stage_key="summary", status=status, started_at=start,
        first_token_at=start + timedelta(seconds=first_token),
        finished_at=start + timedelta(seconds=duration),
        error_code="provider_error" if message else "", error_message=message,
    )  # fmt: skip


def _bar(html: str, chart: str, label: str) -> str:
    """The title (label: value) of a bar in the chart whose title starts with `chart`."""
    svg = re.search(rf'<svg[^>]*aria-label="{re.escape(chart)}[^"]*".*?</svg>', html, re.S)[0]
    return unescape(re.search(rf"<title>({re.escape(escape(label))}: [^<]*)</title>", svg)[1])


def test_staff_see_the_last_day_as_charts_and_the_latest_failures(staff, case):
    for minutes in (5, 6, 7):
        _run(case, minutes, first_token=1.5, duration=12)
    _run(case, 8, first_token=0.2, duration=40, status="error",
         message="The AI provider had an internal error. (Reference 1a2b3c4d.)")  # fmt: skip
    _run(case, 60 * 30, first_token=9, duration=9)  # older than a day: not counted
    ChatMessage.objects.create(
        case=case, role="assistant", status="interrupted", error_code="interrupted",
        finished_at=timezone.now(), error_message="The server stopped.",
    )  # fmt: skip

    page = staff.get("/ops/").text
    assert _bar(page, "Time to the first token", "1 to 2 s") == "1 to 2 s: 3"
    assert _bar(page, "Time to the first token", "< 0.5 s") == "< 0.5 s: 1"
    assert _bar(page, "Time to the first token", "8 to 15 s") == "8 to 15 s: 0"
    assert _bar(page, "Stage duration", "10 to 20 s") == "10 to 20 s: 3"
    assert _bar(page, "Stage duration", "30 to 60 s") == "30 to 60 s: 1"
    svg = re.search(r'<svg[^>]*aria-label="Share of generations.*?</svg>', page, re.S)[0]
    hours = re.findall(r"<title>\d\d:00: (\d+)% of (\d+)</title>", svg)
    assert sum(int(total) for _, total in hours) == 5  # the last day's, wherever the hour fell
    assert sum(round(int(rate) * int(total) / 100) for rate, total in hours) == 2
    assert re.findall(r"<code data-reference>(\w*)</code>", page) == ["", "1a2b3c4d"]
    assert '<dd data-gauge="running">0</dd>' in page
    assert "<script" not in page.split("<main", 1)[1]  # drawn on the server


def test_clinicians_find_no_operations_page(alice_client, client):
    assert alice_client.get("/ops/").status_code == 404
    assert client.get("/ops/").status_code == 302  # to the login


@pytest.mark.django_db(transaction=True)
def test_the_page_counts_the_streams_open_and_the_generations_running_now(
    server, alice_http, case, simulator, django_user_model
):
    staff = django_user_model.objects.create_user("ops", password="ops-password-1", is_staff=True)
    simulator.configure(tps=10, words=300)
    alice_http.post(f"/cases/{case.pk}/stages/summary/run")
    with httpx.Client(base_url=server, timeout=30) as ops:
        log_in(ops, staff)
        events = f"/cases/{case.pk}/stages/summary/events"
        with alice_http.stream("GET", events) as stream:
            lines = stream.iter_lines()  # kept: a closed iterator would close the stream
            while next(lines) != "event: snapshot":  # the page is watching
                pass
            busy = ('<dd data-gauge="open-streams">1</dd>', '<dd data-gauge="running">1</dd>')
            wait_until(lambda: all(gauge in ops.get("/ops/").text for gauge in busy))
        alice_http.post(f"/cases/{case.pk}/stages/summary/cancel")
        idle = ('<dd data-gauge="open-streams">0</dd>', '<dd data-gauge="running">0</dd>')
        wait_until(lambda: all(gauge in ops.get("/ops/").text for gauge in idle))
