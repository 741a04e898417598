"""JSON errors everywhere: `{"error": {"code": "...", "message": "...", "field": ...}}`.

Validation failures name the offending field; unexpected failures are logged with the request id and answered
without internals.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error meant for the client: raise it from services and routes."""

    def __init__(self, code: str, message: str, *, status: int = 400, field: str | None = None, **extra) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.field, self.extra = code, message, status, field, extra


def error_response(code: str, message: str, status: int, field: str | None = None, **extra):
    body = {"code": code, "message": message, "field": field, **extra}
    return jsonify({"error": body}), status


def _first_field_error(messages: object, prefix: str = "") -> tuple[str | None, str]:
    """Flatten marshmallow's nested messages to the first (dotted field, message) pair."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in {"json", "query", "form", "headers", "view_args", "files"}:
                return _first_field_error(value, prefix)
            return _first_field_error(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    if isinstance(messages, list) and messages:
        return prefix or None, str(messages[0])
    return prefix or None, str(messages)


def _http_error(exc: HTTPException):
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if messages is not None:  # webargs/marshmallow validation (flask-smorest answers 422)
        field, message = _first_field_error(messages)
        return error_response("validation_error", message, 422, field, details=messages)
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(code, exc.description or exc.name, exc.code or 500)


def _api_error(exc: ApiError):
    return error_response(exc.code, exc.message, exc.status, exc.field, **exc.extra)


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return error_response("internal_error", "服务器内部错误，请稍后重试", 500)


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
