"""What only the operator may see: /metrics, the provider's configuration, the simulator's
controls."""

import subprocess
import sys

import httpx
import pytest
from django.test import Client

from tests.conftest import ROOT, free_port, stop_process, wait_until_up
from tests.streams import follow

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("address", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, 404),  # through a proxy on this host
        ("10.1.2.3", {}, 404),
    ],
)
def test_without_a_token_metrics_answer_direct_loopback_requests_only(address, headers, status):
    response = Client(REMOTE_ADDR=address).get("/metrics", headers=headers)
    assert response.status_code == status
    assert ("medhastra_" in response.text) == (status == 200)


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 404), ("Bearer wrong", 404), ("s3cret-token", 404), ("Bearer s3cret-token", 200)],
)
def test_with_a_token_metrics_answer_that_bearer_only_loopback_too(settings, authorization, status):
    settings.METRICS_TOKEN = "s3cret-token"
    headers = {"Authorization": authorization} if authorization else {}
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics", headers=headers).status_code == status
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics", headers=headers).status_code == status


def test_metrics_are_read_only():
    assert Client(REMOTE_ADDR="127.0.0.1").post("/metrics").status_code == 404


def test_clinicians_see_the_models_name_never_the_providers_url(alice_http, case, simulator):
    assert alice_http.post(f"/cases/{case.pk}/stages/summary/run").is_redirect
    view, _ = follow(alice_http, f"/cases/{case.pk}/stages/summary/events")
    page = alice_http.get(f"/cases/{case.pk}/").text
    for shown in (page, *(event.data for event in view.events)):
        assert simulator.url not in shown and "/v1" not in shown and "test-key" not in shown
    assert '<span class="engine">simulator</span>' in page


def test_the_simulator_accepts_only_its_known_control_keys(simulator):
    before = simulator.state()
    for change in (
        {"__class__": "x"},
        {"tps": 5, "host": "0.0.0.0"},
        {"requests": [{"a": 1}]},
        {"tps": 0},
        {"words": "many"},
        ["tps", 5],
    ):
        response = httpx.post(f"{simulator.url}/control", json=change)
        assert response.status_code == 400, change
    assert simulator.state() == before


def test_the_simulator_binds_loopback_only():
    refused = subprocess.run(
        [sys.executable, "-m", "tests.llm_simulator", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "binds loopback only" in refused.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "tests.llm_simulator", "--host", "no-such-host.invalid"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unknown.returncode == 2 and "binds loopback only" in unknown.stderr


def test_the_simulator_keeps_a_bounded_request_log():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_simulator", "--port", str(port), "--keep", "3"], cwd=ROOT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/control", process)
        for n in range(5):
            question = {"messages": [{"role": "user", "content": f"question {n}"}]}
            httpx.post(f"{url}/v1/chat/completions", json=question).raise_for_status()
        kept = httpx.get(f"{url}/control").json()["requests"]
        assert [r["messages"][0]["content"] for r in kept] == [f"question {n}" for n in (2, 3, 4)]
    finally:
        stop_process(process)
