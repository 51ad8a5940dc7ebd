"""Repeated password guesses are refused for a while, on both logins, and the page says so."""

import time
from datetime import timedelta

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOGINS = ["/accounts/login/", "/admin/login/"]


def _guess(client: Client, login: str, username: str, password: str = "wrong-guess"):
    return client.post(login, {"username": username, "password": password})


@pytest.mark.parametrize("login", LOGINS)
def test_five_failures_for_a_username_refuse_it_from_anywhere_with_a_message(login, alice, bob):
    for n in range(4):
        assert _guess(Client(REMOTE_ADDR=f"10.0.0.{n}"), login, "alice").status_code == 200
    refused = _guess(Client(REMOTE_ADDR="10.0.0.4"), login, "alice")
    assert refused.status_code == 429
    assert "Too many failed logins for this username or from this address" in refused.text
    assert "refused for 15 min" in refused.text
    right = _guess(Client(REMOTE_ADDR="10.0.0.9"), login, "alice", "alice-password-1")
    assert right.status_code == 429  # even with the right password
    assert _guess(Client(REMOTE_ADDR="10.0.0.1"), login, "bob", "bob-password-1").status_code in (
        200 if login.startswith("/admin") else 302,  # bob is no staff: the admin says so
        302,
    )


@pytest.mark.parametrize("login", LOGINS)
def test_five_failures_from_an_address_refuse_it_for_everyone(login, alice):
    for n in range(5):
        _guess(Client(REMOTE_ADDR="10.0.0.1"), login, f"nobody-{n}")
    right = _guess(Client(REMOTE_ADDR="10.0.0.1"), login, "alice", "alice-password-1")
    assert right.status_code == 429
    elsewhere = _guess(
        Client(REMOTE_ADDR="10.0.0.2"), "/accounts/login/", "alice", "alice-password-1"
    )
    assert elsewhere.status_code == 302


def test_after_the_cool_off_the_right_password_works_again(alice, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=3)
    for _ in range(5):
        _guess(Client(), "/accounts/login/", "alice")
    assert _guess(Client(), "/accounts/login/", "alice", "alice-password-1").status_code == 429
    time.sleep(3.2)
    assert _guess(Client(), "/accounts/login/", "alice", "alice-password-1").status_code == 302


def test_a_colleagues_login_from_the_same_address_does_not_wipe_the_guesses(alice, bob):
    for _ in range(4):
        _guess(Client(REMOTE_ADDR="10.0.0.1"), "/accounts/login/", "bob")
    logged_in = _guess(
        Client(REMOTE_ADDR="10.0.0.1"), "/accounts/login/", "alice", "alice-password-1"
    )
    assert logged_in.status_code == 302
    assert _guess(Client(REMOTE_ADDR="10.0.0.7"), "/accounts/login/", "bob").status_code == 429
