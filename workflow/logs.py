"""Log lines as JSON, one per line, with the ids that find what happened: the request's,
the case's, the generation's and a failure's reference. Never case text or model output:
messages say what happened; the ids say to what."""

import contextvars
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType

_ids: contextvars.ContextVar[Mapping[str, str | int]] = contextvars.ContextVar(
    "log_ids", default=MappingProxyType({})
)
IDS = ("request", "case", "run", "reply", "reference")


@contextmanager
def ids(**more: str | int | None) -> Iterator[None]:
    """Every line logged inside carries these ids too (in this task or thread)."""
    token = _ids.set({**_ids.get(), **{k: v for k, v in more.items() if v is not None}})
    try:
        yield
    finally:
        _ids.reset(token)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_ids.get(),
            **{name: getattr(record, name) for name in IDS if hasattr(record, name)},
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)

    def formatException(self, exc_info) -> str:
        # A database error's DETAIL quotes the row it failed on: case text, model output.
        text = super().formatException(exc_info)
        return "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("DETAIL:")
        )
