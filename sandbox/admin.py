"""Admin endpoints under `/_sandbox/` for demos, tests and benchmarks (never throttled, never faulted)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from sandbox.contacts import render_dept, render_user
from sandbox.errors import AdminError, json_response
from sandbox.inputs import admin_body, admin_int, admin_str, int_field
from sandbox.keys import state_of

routes = web.RouteTableDef()

MAX_CHANGES = 1000


@routes.get("/_sandbox/health")
async def health(request: web.Request) -> web.Response:
    state = state_of(request)
    with state.lock:
        counts = {"departments": len(state.province.departments), "users": len(state.province.users)}
    return json_response(
        {
            "status": "ok",
            "scale": state.settings.scale,
            "seed": state.settings.seed,
            **counts,
            "stream_connections": len(state.stream.connections),
            "events_channel": state.events.channel(),
        }
    )


@routes.get("/_sandbox/truth")
async def truth(request: web.Request) -> web.Response:
    """Every department and user exactly as department/get and user/get return them, plus each department's level.

    At province scale this is hundreds of megabytes; `?only=departments` or `?only=users` halves the wait."""
    state = state_of(request)
    only = request.query.get("only") or None
    if only not in (None, "departments", "users"):
        raise AdminError("only 只能是 departments 或 users", field="only")
    body: dict[str, Any] = {"corp_id": state.settings.corp_id}
    with state.lock:
        province = state.province
        if only in (None, "departments"):
            body["departments"] = [
                {**render_dept(province, d), "_level": d.level} for d in province.departments.values()
            ]
        if only in (None, "users"):
            body["users"] = [render_user(province, u) for u in province.users.values()]
    return json_response(body)


@routes.get("/_sandbox/stats")
async def stats(request: web.Request) -> web.Response:
    return json_response(state_of(request).throttle.snapshot())


@routes.post("/_sandbox/stats/reset")
async def stats_reset(request: web.Request) -> web.Response:
    state_of(request).throttle.reset()
    return json_response({"ok": True})


@routes.post("/_sandbox/tokens/revoke")
async def tokens_revoke(request: web.Request) -> web.Response:
    """Expire every app token now, so a client must meet 42001/InvalidAuthentication and refresh."""
    return json_response({"revoked": state_of(request).tokens.revoke()})


def contact_event_data(event: Any) -> dict[str, Any]:
    """The Stream `data` of a contact event (§2.3): ids only, plus diffInfo for modifications."""
    data: dict[str, Any] = {"timeStamp": str(int(time.time() * 1000))}
    if event.event_type.startswith("org_dept"):
        data["deptId"] = list(event.dept_ids)
    else:
        data["userId"] = list(event.user_ids)
    if event.diff:
        data["diffInfo"] = event.diff
    return data


def _apply_changes(state: Any, count: int, seed: int) -> list[Any]:
    from sandbox.changes import apply_changes

    with state.lock:
        return apply_changes(state.province, count, seed)


@routes.post("/_sandbox/changes")
async def changes(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await admin_body(request)
    count = admin_int(body, "count", default=5, minimum=1, maximum=MAX_CHANGES)
    seed = admin_int(body, "seed", default=int(time.time()))
    events = await asyncio.get_running_loop().run_in_executor(None, _apply_changes, state, count, seed)
    out = []
    for event in events:
        delivery = await state.events.publish(event.event_type, contact_event_data(event))
        out.append(
            {
                "eventId": delivery.event_id,
                "event_type": event.event_type,
                "user_ids": list(event.user_ids),
                "dept_ids": list(event.dept_ids),
                "diff": event.diff,
                "delivery": delivery.view(),
            }
        )
    delivered = sum(1 for e in out if e["delivery"]["outcome"] == "delivered")
    return json_response({"count": len(out), "delivered": delivered, "events": out})


@routes.post("/_sandbox/events")
async def events(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await admin_body(request)
    event_type = admin_str(body, "event_type")
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise AdminError("data 必须是JSON对象", field="data")
    delivery = await state.events.publish(event_type, data)
    return json_response({"eventId": delivery.event_id, "delivery": delivery.view()})


@routes.post("/_sandbox/check-url")
async def check_url(request: web.Request) -> web.Response:
    return json_response(await state_of(request).events.check_url())


@routes.get("/_sandbox/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    state = state_of(request)
    since = int_field(request.query.get("since", "0"))
    if since is None or since < 0:
        raise AdminError("since 必须是非负整数（投递 id）", field="since")
    event_type = request.query.get("event_type") or None
    found = [d.view() for d in state.events.deliveries[since:] if event_type in (None, d.event_type)]
    return json_response({"deliveries": found, "channel": state.events.channel()})


@routes.get("/_sandbox/stream")
async def stream_connections(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response({"connections": [c.view() for c in state.stream.connections.values()]})


@routes.post("/_sandbox/stream/disconnect")
async def stream_disconnect(request: web.Request) -> web.Response:
    """Drop every Stream connection: `system` sends the protocol's SYSTEM disconnect frame first (the client
    should reconnect with a new ticket), `close` closes the WebSocket abruptly as a network failure would."""
    state = state_of(request)
    body = await admin_body(request)
    mode = admin_str(body, "mode", required=False, default="system")
    if mode not in ("system", "close"):
        raise AdminError("mode 只能是 system 或 close", field="mode")
    return json_response({"disconnected": await state.stream.disconnect_all(mode == "system")})
