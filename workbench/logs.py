"""Structured logging: one JSON object per line, with the request id of the request being served.

Health data and secrets must never reach the logs, so a filter masks what looks like a token, a secret, a
resident ID number or a mobile number in every record, whatever code wrote it (the SDKs included).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-Id"

_REDACTIONS = [
    # access_token=..., appsecret=..., "accessToken": "...", x-acs-dingtalk-access-token: ...
    (
        re.compile(
            r"(?i)((?:access_?token|app_?secret|client_?secret|secret|token|sign|password)[\"']?\s*[=:]\s*[\"']?)"
            r"[^\s&\"',}]+"
        ),
        r"\1***",
    ),
    (re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?!\d)"), r"\1********\2"),  # 18-digit resident ID number
    (re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)"), r"\1****\2"),  # mainland mobile number
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# The `extra=` fields a record may carry into the log: ids, counts and states only. A field not listed here is
# dropped, so a careless `extra={"resident": ...}` cannot put personal data into the logs.
LOGGED_EXTRAS = (
    "event", "api", "status", "duration_ms", "attempt", "job", "code", "result", "action",
    "channel", "rows", "held", "quota", "card", "approval", "run_id", "deleted", "retention_days",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key in LOGGED_EXTRAS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record, not the one at start-up: a job thread that
    outlives a replaced stderr (a test runner's capture) would otherwise write into a closed stream."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    if any(getattr(h, "_workbench", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler._workbench = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def init_app(app: Flask) -> None:
    configure(app.config["SETTINGS"].log_level)
    access = logging.getLogger("workbench.access")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if re.fullmatch(r"[A-Za-z0-9._-]{8,64}", incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        started = g.get("request_started")
        if started is not None and request.path not in ("/healthz",):
            access.info(
                "%s %s",
                request.method,
                request.path,  # the path only: query strings can carry tokens
                extra={"status": response.status_code, "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
            )
        return response
