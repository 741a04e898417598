"""The DingTalk gateway: the one place every part of the workbench calls DingTalk through.

Both API families (reference/dingtalk.md §0): legacy oapi through one `urllib3` connection pool (token in the
query, errors as `errcode` in an HTTP 200 reply) and the new API through `alibabacloud_dingtalk` (token header,
errors as HTTP status + code, raised by the SDK as `TeaException`). Every attempt of every call takes the app
token from the shared cache, waits for the per-API rate limiter, and is retried when DingTalk says "later":
throttling, busy, 5xx, timeouts and connection errors back off exponentially with full jitter; a rejected token
is refreshed once. Successful metered calls are counted against the month's quota.

Logs carry the API path, status/code, attempt and duration only: tokens, secrets and bodies (which can hold
patient data) never reach them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import inspect
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import redis as redis_lib
import urllib3
from alibabacloud_dingtalk.oauth2_1_0 import models as oauth2_models
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_util import models as util_models
from darabonba.exceptions import RetryError
from requests.utils import get_environ_proxies
from sqlalchemy.exc import SQLAlchemyError
from Tea.exceptions import TeaException
from Tea.model import TeaModel

from config.settings import DingTalkSettings
from workbench.dingtalk.errors import (
    DingTalkError,
    ThrottledError,
    TokenError,
    TransientError,
    api_error,
    http_error,
    network_error,
    oapi_error,
)
from workbench.dingtalk.meter import QuotaMeter, metered_kind
from workbench.dingtalk.ratelimit import WINDOW, RateLimiter
from workbench.dingtalk.token import AppTokenProvider

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.2  # seconds; attempt n waits up to base * 2**(n-1), capped
BACKOFF_CAP = 5.0
POOL_SIZE = 32  # connections kept to the oapi host: enough for the web threads and a worker's threads
JSON = {"Content-Type": "application/json"}

T = TypeVar("T")


@dataclass(frozen=True)
class _Operation:
    """One SDK operation, resolved once: its `*_with_options` method, headers model and path template."""

    call: Callable[..., Any]
    headers: type[TeaModel] | None  # None for anonymous operations (the token call itself)
    path: str


class DingTalkGateway:
    """Calls DingTalk for every part of the workbench; see the module docstring for what it guarantees."""

    def __init__(
        self,
        settings: DingTalkSettings,
        *,
        redis: redis_lib.Redis | None = None,
        meter: QuotaMeter | None = None,
        max_attempts: int = 6,
        timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._meter = meter
        self._max_attempts = max_attempts
        api_base = urlsplit(settings.api_base)
        # Tokens and rate budgets belong to an app on the platform that issued them: keyed by app key and host, so
        # sandboxes on other ports (same default app key, same Redis) never hand each other their tokens.
        app = f"{settings.app_key}@{api_base.netloc}"
        self._limiter = RateLimiter(redis, app, settings.qps, settings.api_qps)
        self._tokens = AppTokenProvider(self._fetch_token, app=app, redis=redis)

        self._http = _pool(settings.oapi_base, timeout)

        self._sdk_config = open_api_models.Config(
            protocol=api_base.scheme,
            region_id="central",
            endpoint=api_base.netloc,
            connect_timeout=int(timeout * 1000),
            read_timeout=int(timeout * 1000),
        )
        self._runtime = util_models.RuntimeOptions()
        self._clients: dict[str, Any] = {}
        self._operations: dict[tuple[str, str], _Operation] = {}
        self._sdk_lock = threading.Lock()

    # -- public -----------------------------------------------------------------------------------------------

    def oapi(self, path: str, body: dict | None = None, *, method: str = "POST", params: dict | None = None) -> dict:
        """Call a legacy oapi path (e.g. "/topapi/v2/user/list") and return the reply (errcode 0).

        The app token goes in `?access_token=` unless `params` brings its own (a custom robot's webhook token);
        then a token error is the caller's and is raised, not refreshed.
        """
        app_token = not (params and "access_token" in params)
        url = self._settings.oapi_base + path

        payload = None if body is None else json.dumps(body, allow_nan=False).encode()

        def send(token: str | None) -> dict:
            query = {"access_token": token, **(params or {})} if token else params
            try:
                response = self._http.request(
                    method, f"{url}?{urlencode(query)}" if query else url, body=payload, headers=JSON
                )
            except urllib3.exceptions.HTTPError as exc:  # timeouts, refused and reset connections
                raise network_error(exc, api=path) from None
            return _oapi_reply(response.status, response.data, path)

        return self._call(path, send, app_token=app_token)

    def api(
        self,
        module: str,
        operation: str,
        request: object | None = None,
        *,
        path_params: Sequence[str] = (),
        user_token: str | None = None,
    ) -> Any:
        """Call a new-API operation through `alibabacloud_dingtalk` and return the response body (a Tea model).

        E.g. `gw.api("robot_1_0", "batch_send_oto", robot_models.BatchSendOTORequest(...))`. `path_params` are
        the operation's leading path arguments (e.g. the union id of contact_1_0 `get_user`). `user_token` sends a
        person's OAuth2 token instead of the app token (`/v1.0/contact/users/me`, §7).
        """
        op = self._operation(module, operation)

        def send(token: str | None) -> Any:
            token = user_token or token
            headers = op.headers(x_acs_dingtalk_access_token=token) if op.headers else {}
            args = [*path_params, *([] if request is None else [request]), headers, self._runtime]
            try:
                return op.call(*args).body
            except TeaException as exc:
                raise _sdk_error(exc, op.path) from None

        return self._call(op.path, send, app_token=op.headers is not None and user_token is None)

    def webhook(self, robot_token: str, body: dict, *, secret: str | None = None) -> dict:
        """Post to a custom group robot (自定义机器人) with its own token, signed (加签, §4.1) when it has a secret.

        Retries can repeat a message whose reply was lost: put a `msgUuid` in `body` to let DingTalk drop repeats.
        """
        params = {"access_token": robot_token}
        if secret:
            timestamp = str(int(time.time() * 1000))
            digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
            params |= {"timestamp": timestamp, "sign": base64.b64encode(digest).decode()}
        return self.oapi("/robot/send", body, params=params)

    def access_token(self) -> str:
        """The app access token (cached; refreshed ahead of expiry)."""
        return self._tokens.get()

    def check(self) -> None:
        """Readiness: raise `DingTalkError` unless a valid token is cached or can be obtained."""
        self._tokens.get()

    def close(self) -> None:
        self._http.clear()

    # -- the retry loop -----------------------------------------------------------------------------------------

    def _call(self, api: str, send: Callable[[str | None], T], *, app_token: bool) -> T:
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = self._tokens.get() if app_token else None
            self._limiter.acquire(api)  # after the token: a slow refresh must not delay a call past its slot
            started = time.perf_counter()
            try:
                result = send(token)
            except DingTalkError as exc:
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                extra = {"api": api, "status": exc.code, "attempt": attempt, "duration_ms": duration_ms}
                if isinstance(exc, TokenError) and app_token and not refreshed:
                    refreshed = True
                    self._tokens.invalidate(token)
                    log.warning("dingtalk token rejected (%s); refreshing", exc.code, extra=extra)
                    continue
                if isinstance(exc, ThrottledError | TransientError) and attempt < self._max_attempts:
                    delay = _backoff(attempt, throttled=isinstance(exc, ThrottledError))
                    log.warning("dingtalk call failed (%s); retrying in %.2fs", exc.code, delay, extra=extra)
                    time.sleep(delay)
                    continue
                log.warning("dingtalk call failed (%s)", exc.code, extra=extra)
                raise
            log.debug(
                "dingtalk call ok",
                extra={
                    "api": api,
                    "status": 0,
                    "attempt": attempt,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            self._record(api)
            return result

    def _record(self, api: str) -> None:
        kind = metered_kind(api)
        if self._meter is None or kind is None:
            return
        try:
            self._meter.record(kind)
        except SQLAlchemyError:
            # The call went through; failing it now would make the caller send the message again.
            log.warning("quota meter could not record a call", extra={"api": api}, exc_info=True)

    # -- the SDK --------------------------------------------------------------------------------------------------

    def _fetch_token(self) -> tuple[str, float]:
        request = oauth2_models.GetAccessTokenRequest(
            app_key=self._settings.app_key, app_secret=self._settings.app_secret
        )
        body = self.api("oauth2_1_0", "get_access_token", request)
        return body.access_token, float(body.expire_in)

    def _operation(self, module: str, operation: str) -> _Operation:
        op = self._operations.get((module, operation))
        if op is not None:
            return op
        with self._sdk_lock:
            client = self._clients.get(module)
            if client is None:
                client_cls = importlib.import_module(f"alibabacloud_dingtalk.{module}.client").Client
                client = self._clients[module] = client_cls(self._sdk_config)
            # The generator drops the underscore after some names: batch_send_oto -> batch_send_otowith_options.
            method = getattr(client, f"{operation}_with_options", None) or getattr(
                client, f"{operation}with_options", None
            )
            if method is None:
                raise ValueError(f"alibabacloud_dingtalk.{module} has no operation {operation!r}")
            headers = inspect.signature(method).parameters["headers"].annotation
            op = _Operation(
                call=method,
                headers=headers if isinstance(headers, type) and issubclass(headers, TeaModel) else None,
                path=_sdk_path(method),
            )
            self._operations[(module, operation)] = op
            return op


def _sdk_path(method: Callable[..., Any]) -> str:
    """The path template of an SDK operation, e.g. "/v1.0/contact/users/{union_id}".

    The limiter and the meter key calls by DingTalk's API path (DingTalk counts QPS per API), but the SDK builds
    the path only inside the call, so it is read once from the generated source.
    """
    match = re.search(r"pathname=f?'([^']+)'", inspect.getsource(method))
    if match is None:
        raise ValueError(f"cannot find the path of {method.__qualname__}")
    return match.group(1)


def _pool(base: str, timeout: float) -> urllib3.PoolManager:
    """The oapi connection pool, through the proxy the environment names for `base` (read once, as `requests`
    would on every call). urllib3 directly: `requests` cost ~0.7 ms more CPU per call (1.29 against 0.59 ms),
    which a full org sync pays 80,000 times. Retries are the gateway's own, so urllib3's are off."""
    options = {"maxsize": POOL_SIZE, "retries": False, "timeout": urllib3.Timeout(connect=timeout, read=timeout)}
    proxy = get_environ_proxies(base).get(urlsplit(base).scheme)
    return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)


def _oapi_reply(status: int, data: bytes, api: str) -> dict:
    try:
        reply = json.loads(data)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or "errcode" not in reply:
        raise http_error(status, api=api)  # a gateway page (502 HTML), not DingTalk's JSON
    if reply["errcode"] != 0:
        raise oapi_error(reply, api=api, http_status=status)
    return reply


def _sdk_error(exc: TeaException, api: str) -> DingTalkError:
    """Map the SDK's exception: an HTTP error reply carries `data.statusCode`; otherwise nothing usable came back."""
    data = exc.data if isinstance(exc.data, dict) else {}
    status = data.get("statusCode")
    if status is not None:
        code = data.get("code") or data.get("Code") or f"http_{status}"
        message = data.get("message") or data.get("Message") or ""
        request_id = data.get("requestid") or data.get("RequestId")
        return api_error(int(status), str(code), str(message), api=api, request_id=request_id)
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, RetryError):  # the SDK's wrapper of an IOError: timeout, refused, reset
        return network_error(inner, api=api)
    # An unreadable reply (e.g. a gateway's HTML error page, which the SDK fails to parse as JSON).
    return TransientError("bad_reply", f"unreadable reply ({type(inner or exc).__name__})", api=api)


def _backoff(attempt: int, *, throttled: bool) -> float:
    """Exponential backoff with full jitter; after throttling, first let DingTalk's one-second window pass."""
    delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
    return delay + WINDOW if throttled else delay
