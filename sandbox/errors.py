"""DingTalk's two error shapes plus the sandbox's own admin error shape.

Handlers raise these exceptions; the error middleware in `app.py` renders them, so a handler never has to know
which family's envelope it answers in:
* oapi: always HTTP 200, `{"errcode","errmsg","request_id"}` (§8.2);
* new API: HTTP 4xx/5xx, `{"code","message","requestid"}` (§8.2);
* admin (`/_sandbox/*`): `{"error": {"code","message","field"}}`.
"""

from __future__ import annotations

import functools
import json
import secrets
from typing import Any

from aiohttp import web


def request_id() -> str:
    """A request id that looks like DingTalk's (hex, 32 characters)."""
    return secrets.token_hex(16)


class OapiError(Exception):
    """A legacy-API error: HTTP 200 with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str, **extra: Any) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.extra = extra


class ApiError(Exception):
    """A new-API error: an HTTP status with a string code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message


class AdminError(Exception):
    """Bad input to a `/_sandbox/*` endpoint."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


_dumps = functools.partial(json.dumps, ensure_ascii=False)


def json_response(body: Any, status: int = 200) -> web.Response:
    """JSON in UTF-8 rather than \\u escapes, as DingTalk answers."""
    return web.json_response(body, status=status, dumps=_dumps)


def oapi_ok(**fields: Any) -> web.Response:
    return json_response({"errcode": 0, "errmsg": "ok", **fields, "request_id": request_id()})


def oapi_error(errcode: int, errmsg: str, **extra: Any) -> web.Response:
    return json_response({"errcode": errcode, "errmsg": errmsg, **extra, "request_id": request_id()})


def api_error(status: int, code: str, message: str) -> web.Response:
    return json_response({"code": code, "message": message, "requestid": request_id()}, status=status)


def admin_error(err: AdminError) -> web.Response:
    body = {"error": {"code": err.code, "message": err.message, "field": err.field}}
    return json_response(body, status=err.status)


def is_new_api(path: str) -> bool:
    """True for api.dingtalk.com paths (`/v1.0/...`), False for oapi paths."""
    return path.startswith("/v1.0/") or path.startswith("/v2.0/")


def is_admin(path: str) -> bool:
    return path == "/_sandbox" or path.startswith("/_sandbox/")
