"""The embedded PostgreSQL used when DATABASE_URL is not set (a laptop, `make run`, `make test`)."""

import logging
import warnings
from pathlib import Path
from urllib.parse import quote


def database_url(base_dir: Path) -> str:
    """Start (or join) the embedded server under `.medhastra/` and return its URL."""
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR on servers and CI
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as exc:  # pgserver ships wheels for CPython <= 3.12 only
            raise SystemExit(
                "The embedded PostgreSQL needs Python 3.12 (the pgserver package). "
                "Use Python 3.12, or set DATABASE_URL to a PostgreSQL server."
            ) from exc
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        data_dir = base_dir / ".medhastra" / "pgdata"
        data_dir.parent.mkdir(exist_ok=True)
        # "stop" shares one server among all processes using the directory and stops it
        # when the last of them exits; the data stays on disk between runs.
        pgserver.get_server(data_dir, cleanup_mode="stop")
    return f"postgresql://postgres@{quote(str(data_dir), safe='')}/postgres"
