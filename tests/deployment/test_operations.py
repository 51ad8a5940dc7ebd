"""What the deployment guide has an operator install and run, checked as far as this
machine allows: the systemd units, and a backup of the database restored elsewhere."""

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import ROOT, _test_database_url, deployed_daphne_flags, installed
from workflow.models import ClinicalCase, StageRun

pytestmark = pytest.mark.deployment

UNITS = ROOT / "deploy" / "systemd"


def test_the_systemd_units_are_valid_as_installed(tmp_path):
    """As installed, with this checkout in place of /srv/medhastra."""
    verify = installed("systemd-analyze", "systemd")
    for unit in ("medhastra-prepare.service", "medhastra@.service"):
        text = (UNITS / unit).read_text().replace("/srv/medhastra", str(ROOT))
        text = text.replace("/etc/medhastra/env", str(ROOT / "deploy" / "medhastra.env.example"))
        (tmp_path / unit).write_text(text)
    (tmp_path / "medhastra@8001.service").write_text((tmp_path / "medhastra@.service").read_text())
    checked = subprocess.run(
        [verify, "verify", "medhastra-prepare.service", "medhastra@8001.service"],
        cwd=tmp_path, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


def test_the_units_run_the_documented_processes():
    instance = (UNITS / "medhastra@.service").read_text()
    assert deployed_daphne_flags() == ["--proxy-headers", "--access-log", "/dev/null"]
    assert "-b 127.0.0.1 -p %i medhastra.asgi:application" in instance
    prepare = (UNITS / "medhastra-prepare.service").read_text()
    assert "manage.py migrate --noinput" in prepare and "collectstatic --noinput" in prepare
    assert (
        "PROMETHEUS_MULTIPROC_DIR=/run/medhastra/metrics"
        in (ROOT / "deploy" / "medhastra.env.example").read_text()
    )


def _postgres_tool(name: str, major: int) -> str:
    """The tool of the server's own major version: the embedded server's, or the system's."""
    import pgserver

    for candidate in (
        Path(pgserver.__file__).parent / "pginstall" / "bin" / name,
        shutil.which(name),
    ):
        if candidate and Path(candidate).exists():
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if f") {major}." in version.stdout:
                return str(candidate)
    return installed(f"{name}-{major}", f"postgresql-client-{major}")


@pytest.mark.django_db(transaction=True)
def test_a_backup_restores_every_case_and_what_was_generated(alice, tmp_path):
    case = ClinicalCase.objects.create(owner=alice, chief_complaint="Backed-up chest pain")
    StageRun.objects.create(
        case=case, stage_key="summary", status="complete", reasoning="Reasoning to keep."
    )
    major = connection.cursor().connection.info.server_version // 10000
    source = _test_database_url()
    dump = tmp_path / "medhastra.dump"
    subprocess.run(
        [_postgres_tool("pg_dump", major), "--format=custom", f"--file={dump}", source],
        check=True, timeout=120,
    )  # fmt: skip

    restored = f"restored_{secrets.token_hex(4)}"
    with psycopg.connect(source, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{restored}"')
    try:
        target = source.rsplit("/", 1)[0] + f"/{restored}"
        subprocess.run(
            [_postgres_tool("pg_restore", major), "--no-owner", f"--dbname={target}", str(dump)],
            check=True, timeout=120,
        )  # fmt: skip
        with psycopg.connect(target) as database:
            row = database.execute(
                "SELECT c.chief_complaint, r.reasoning FROM workflow_clinicalcase c "
                "JOIN workflow_stagerun r ON r.case_id = c.id"
            ).fetchone()
        assert row == ("Backed-up chest pain", "Reasoning to keep.")
    finally:
        with psycopg.connect(source, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{restored}" WITH (FORCE)')
