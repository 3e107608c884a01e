"""Logging for people and for collectors.

At the default level (INFO) the log says what a person needs: start and stop, links up and
down, effects that failed, requests that failed. Routine ticks (beat's schedule, each outbox
poll, each request served) are DEBUG. `log_format = "json"` writes one JSON object a line
with the case number, call uniqueid or outbox key where a record carries one
(`log.warning(..., extra={"case": number})`).
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("case", "uniqueid", "outbox_key", "outbox_id", "phone")

# chatty third-party loggers, and the level they need to say something at the default level
QUIET = {
    "celery.beat": logging.WARNING,             # "Scheduler: Sending due task" every tick
    "celery.app.trace": logging.WARNING,        # "Task … succeeded"
    "celery.worker.strategy": logging.WARNING,  # "Task … received"
    "alembic": logging.WARNING,
    "httpx": logging.WARNING,
    "uvicorn.error": logging.INFO,
}

_SECRET = re.compile(r"(?i)\b(api_key|apikey|token|password|secret)=[^&\s\"]+")


def redact(text: str) -> str:
    """`api_key=hk_…` → `api_key=[redacted]` (query strings end up in access logs)."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class AccessFilter(logging.Filter):
    """uvicorn's access log: failed requests (4xx, 5xx) at INFO, the rest only at DEBUG; secrets redacted."""

    def __init__(self, everything: bool) -> None:
        super().__init__()
        self.everything = everything

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 5:   # (client, method, path, http version, status)
            status = int(args[4]) if str(args[4]).isdigit() else 0
            if not self.everything and status < 400:
                return False
            record.args = (args[0], args[1], redact(str(args[2])), args[3], args[4])
        else:
            record.msg = redact(str(record.msg))
        return True


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Set up the root logger once per process (the web process and the Celery worker alike)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, needed in QUIET.items():
        logging.getLogger(name).setLevel(max(needed, numeric) if numeric > logging.DEBUG else logging.DEBUG)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.filters.clear()
    access.addFilter(AccessFilter(everything=numeric <= logging.DEBUG))
