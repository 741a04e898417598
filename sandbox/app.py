"""The aiohttp application: both DingTalk API families, the Stream WebSocket and the admin pages on one port.

Every non-admin call passes the same gate, in DingTalk's order as seen by a client: a fault may hit it first
(before any side effect, so retrying is always safe), then the per-API throttle, then the token check.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox import (
    admin,
    approvals,
    cards,
    contacts,
    freelogin,
    groups,
    inbox,
    messages,
    notices,
    residents,
    stream,
    tokens,
    webhook,
)
from sandbox.errors import (
    AdminError,
    ApiError,
    OapiError,
    admin_error,
    api_error,
    is_admin,
    is_new_api,
    oapi_error,
)
from sandbox.keys import STATE
from sandbox.settings import Settings
from sandbox.state import SandboxState

access_log = logging.getLogger("sandbox.access")
log = logging.getLogger("sandbox")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that authenticate with something other than the app token (credentials, a robot token, a user token).
_NO_APP_TOKEN = {
    "/gettoken",
    "/robot/send",
    "/v1.0/oauth2/accessToken",
    "/v1.0/oauth2/userAccessToken",
    "/v1.0/gateway/connections/open",
}
_NO_APP_TOKEN_RE = re.compile(r"^/v1\.0/(oauth2/[^/]+/token|contact/users/[^/]+)$")


def needs_app_token(path: str) -> bool:
    return path not in _NO_APP_TOKEN and not _NO_APP_TOKEN_RE.match(path)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per request — method, path, status, time — and never a body or query (tokens live there)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        access_log.info("%s %s %d %.1fms", request.method, request.path, status, (time.perf_counter() - started) * 1000)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render raised errors in the envelope of the family the path belongs to."""
    try:
        return await handler(request)
    except OapiError as exc:
        return oapi_error(exc.errcode, exc.errmsg, **exc.extra)
    except ApiError as exc:
        return api_error(exc.status, exc.code, exc.message)
    except AdminError as exc:
        return admin_error(exc)
    except web.HTTPException as exc:
        if exc.status not in (404, 405):
            raise
        path = request.path
        if is_admin(path):
            return admin_error(
                AdminError(f"没有这个接口: {request.method} {path}", code="not_found", status=exc.status)
            )
        if is_new_api(path):
            return api_error(
                404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
            )
        return oapi_error(22, "Invalid method")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        if is_admin(request.path):
            return admin_error(AdminError("沙箱内部错误，详见日志", code="internal", status=500))
        if is_new_api(request.path):
            return api_error(500, "systemError", "系统错误")
        return oapi_error(-1, "系统繁忙")


@web.middleware
async def gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Fault, throttle and token check for DingTalk API paths; admin pages and the WebSocket pass straight through."""
    path = request.path
    if is_admin(path) or path == "/connect" or request.match_info.http_exception is not None:
        return await handler(request)
    state: SandboxState = request.app[STATE]
    if state.settings.latency:
        await asyncio.sleep(state.settings.latency)
    new_api = is_new_api(path)
    kind = state.faults.pick()
    if kind is not None:
        state.throttle.record_fault(path)
        return await state.faults.respond(kind, new_api)
    if not state.throttle.admit(path):
        if new_api:
            return api_error(
                403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "应用调用该接口的QPS超过限流阈值，请降低调用频率"
            )
        return oapi_error(90018, "当前企业调用该接口超过了限流阈值，请降低调用频率")
    if needs_app_token(path):
        if new_api:
            status = state.tokens.check(request.headers.get("x-acs-dingtalk-access-token"))
            if status != tokens.VALID:
                tokens.raise_api_token_error(status)
        else:
            status = state.tokens.check(request.query.get("access_token"))
            if status != tokens.VALID:
                tokens.raise_oapi_token_error(status)
    return await handler(request)


async def _on_startup(app: web.Application) -> None:
    await app[STATE].events.start()


async def _on_shutdown(app: web.Application) -> None:
    for conn in list(app[STATE].stream.connections.values()):
        await conn.ws.close(code=1001, message=b"sandbox shutting down")


async def _on_cleanup(app: web.Application) -> None:
    await app[STATE].events.close()


def create_app(settings: Settings, province: Any) -> web.Application:
    """Build the application around an already generated province."""
    app = web.Application(
        middlewares=[access_middleware, error_middleware, gate_middleware], client_max_size=4 * 1024 * 1024
    )
    app[STATE] = SandboxState(settings, province)
    for module in (
        tokens,
        contacts,
        freelogin,
        messages,
        webhook,
        notices,
        groups,
        cards,
        approvals,
        residents,
        stream,
        admin,
        inbox,
    ):
        app.router.add_routes(module.routes)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
