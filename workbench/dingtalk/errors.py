"""Typed DingTalk errors, and the one table that maps both API families' error shapes onto them.

Callers decide by type: the gateway retries `ThrottledError` and `TransientError`, refreshes the token once on
`TokenError`, and raises everything else at once. Messages carry DingTalk's code, message and request id, never
a token, a secret or a request body (reference/dingtalk.md §8.2).
"""

from __future__ import annotations

import re

# oapi: HTTP 200 with a numeric errcode (§8.1, §8.2).
_OAPI_THROTTLED = {90018, 90002}  # per app per API; global per API
_OAPI_TRANSIENT = {-1}  # 系统繁忙
_OAPI_TOKEN = {40001, 40014, 42001}  # secret wrong / token invalid, invalid token, token expired
_OAPI_TOKEN_SUBCODES = {"40000", "40014"}  # errcode 88 ("鉴权异常") with a blank or invalid token
_OAPI_QUOTA = {90020}
_OAPI_CREDENTIALS = {40096, 40089}  # bad appKey/appSecret, bad corpid/secret

# New API: an HTTP status with a string code.
_API_THROTTLED_PREFIXES = ("Forbidden.AccessDenied.QpsLimit", "Forbidden.AccessDenied.QpmLimit")
_API_TOKEN = {"InvalidAuthentication"}
_API_QUOTA = {"Forbidden.AccessDenied.ApiCountLimitForOrg"}
_API_CREDENTIALS = {"invalidClientIdOrSecret"}

_QUERY = re.compile(r"\?[^\s'\"]*")


class DingTalkError(Exception):
    """A DingTalk call failed; `code` is DingTalk's errcode (as text) or new-API code, `api` the path called."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        api: str,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = str(code)
        self.message = message
        self.api = api
        self.request_id = request_id
        self.http_status = http_status

    def __str__(self) -> str:
        parts = [f"{self.api}: {self.code} {self.message}"]
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        return ", ".join(parts)

    def __reduce__(self):  # keyword-only arguments: keep the error picklable (RQ jobs, multiprocessing)
        return _rebuild, (type(self), self.code, self.message, self.api, self.request_id, self.http_status)


def _rebuild(cls, code, message, api, request_id, http_status) -> DingTalkError:
    return cls(code, message, api=api, request_id=request_id, http_status=http_status)


class ThrottledError(DingTalkError):
    """DingTalk's QPS limit was hit; retried by the gateway, raised only when the attempts run out."""


class TransientError(DingTalkError):
    """Busy (-1), 5xx, a timeout or a connection error; retried by the gateway."""


class TokenError(DingTalkError):
    """The access token was rejected (invalid, expired, blank); the gateway refreshes it once and retries."""


class QuotaExceededError(DingTalkError):
    """The org's monthly quota of metered calls is used up; retrying cannot help until next month."""


class CredentialsError(DingTalkError):
    """The app key or secret is wrong: a configuration problem, never retried."""


def oapi_error(reply: dict, *, api: str, http_status: int) -> DingTalkError:
    """The typed error for an oapi reply whose errcode is not 0."""
    errcode = int(reply.get("errcode", 0))
    sub_code = str(reply.get("sub_code") or "")
    message = str(reply.get("errmsg") or "")
    if reply.get("sub_msg") and reply["sub_msg"] not in message:
        message = f"{message} ({reply['sub_msg']})"
    if errcode in _OAPI_THROTTLED:
        cls: type[DingTalkError] = ThrottledError
    elif errcode in _OAPI_TRANSIENT:
        cls = TransientError
    elif errcode in _OAPI_TOKEN or (errcode == 88 and sub_code in _OAPI_TOKEN_SUBCODES):
        cls = TokenError
    elif errcode in _OAPI_QUOTA:
        cls = QuotaExceededError
    elif errcode in _OAPI_CREDENTIALS:
        cls = CredentialsError
    else:
        cls = DingTalkError
    code = f"{errcode}/{sub_code}" if errcode == 88 and sub_code else str(errcode)
    return cls(code, message, api=api, request_id=reply.get("request_id"), http_status=http_status)


def api_error(http_status: int, code: str, message: str, *, api: str, request_id: str | None) -> DingTalkError:
    """The typed error for a new-API (api.dingtalk.com) reply with a 4xx/5xx status."""
    if code.startswith(_API_THROTTLED_PREFIXES) or http_status == 429:
        cls: type[DingTalkError] = ThrottledError
    elif code in _API_TOKEN:
        cls = TokenError
    elif code in _API_QUOTA:
        cls = QuotaExceededError
    elif code in _API_CREDENTIALS:
        cls = CredentialsError
    elif http_status >= 500:
        cls = TransientError
    else:
        cls = DingTalkError
    return cls(code, message, api=api, request_id=request_id, http_status=http_status)


def http_error(http_status: int, *, api: str) -> DingTalkError:
    """A reply that is not DingTalk's JSON at all (a gateway's HTML error page, an empty body)."""
    cls = ThrottledError if http_status == 429 else TransientError if http_status >= 500 else DingTalkError
    return cls(f"http_{http_status}", "reply is not DingTalk JSON", api=api, http_status=http_status)


def network_error(exc: BaseException, *, api: str) -> TransientError:
    """A timeout or connection failure; query strings are cut from the text, since oapi puts the token there."""
    text = str(getattr(exc, "message", None) or exc)  # the SDK's RetryError keeps the IOError's text in .message
    code = "timeout" if "timeout" in type(exc).__name__.lower() or "timed out" in text else "connection_error"
    return TransientError(code, _QUERY.sub("?…", text)[:300], api=api)
