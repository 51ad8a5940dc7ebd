"""The Prometheus alert rules in deploy/prometheus/: valid, unit-tested with promtool
(Debian's prometheus package ships it), and about metrics the app exposes."""

import re
import subprocess

import pytest
from django.test import Client

from tests.conftest import ROOT, installed

pytestmark = [pytest.mark.deployment, pytest.mark.django_db]

RULES = ROOT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = installed("promtool", "prometheus")
    return subprocess.run([promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_are_valid():
    checked = _promtool("check", "rules", "medhastra-alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout


def test_each_alert_fires_on_its_trouble_and_stays_quiet_on_a_healthy_host():
    tested = _promtool("test", "rules", "medhastra-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_speak_of_metrics_the_app_exposes():
    exposed = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").text
    declared = set(re.findall(r"^# HELP (\w+) ", exposed, re.MULTILINE))  # with no sample yet
    for name in set(re.findall(r"medhastra_\w+", (RULES / "medhastra-alerts.yml").read_text())):
        assert re.sub(r"_(bucket|count)$", "", name) in declared, name
