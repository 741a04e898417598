"""The Stream gateway (§3.5): `connections/open` hands out a single-use ticket, `/connect` is the WebSocket.

Frames go out as `{"specVersion","type","headers","data"}`; the client acks with the same `messageId`. The sandbox
waits for acks itself (events need SUCCESS or the SDK's echo; card callbacks carry the handler's reply), and picks a
connection at random when several are subscribed, as DingTalk load-balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.errors import ApiError, json_response
from sandbox.inputs import api_body
from sandbox.keys import state_of

routes = web.RouteTableDef()
log = logging.getLogger("sandbox.stream")

TICKET_TTL = 90.0
ACK_TIMEOUT = 5.0
CARD_TOPIC = "/v1.0/card/instances/callback"
DISCONNECT_GRACE = 10.0  # protocol: after a SYSTEM disconnect the server closes the socket 10 s later


@dataclass(slots=True)
class Ticket:
    subscriptions: set[tuple[str, str]]
    expires: float
    ua: str


@dataclass(slots=True)
class Connection:
    id: str
    ws: web.WebSocketResponse
    subscriptions: set[tuple[str, str]]
    ua: str
    opened: int
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    frames_sent: int = 0
    transport: asyncio.Transport | None = None

    def subscribed(self, frame_type: str, topic: str) -> bool:
        return (frame_type, topic) in self.subscriptions or (
            frame_type == "EVENT" and ("EVENT", "*") in self.subscriptions
        )

    def view(self) -> dict[str, Any]:
        subs = [{"type": t, "topic": p} for t, p in sorted(self.subscriptions)]
        return {
            "id": self.id,
            "ua": self.ua,
            "opened": self.opened,
            "subscriptions": subs,
            "frames_sent": self.frames_sent,
        }


@dataclass(slots=True)
class Ack:
    """A client's ack: `code`, `message` and `data` (parsed from its JSON string when possible)."""

    code: int
    message: str
    data: Any
    elapsed_ms: int
    connection_id: str


class StreamHub:
    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.connections: dict[str, Connection] = {}

    def issue_ticket(self, subscriptions: set[tuple[str, str]], ua: str) -> str:
        now = time.monotonic()
        self.tickets = {k: t for k, t in self.tickets.items() if t.expires > now}
        ticket = secrets.token_hex(16)
        self.tickets[ticket] = Ticket(subscriptions, now + TICKET_TTL, ua)
        return ticket

    def take_ticket(self, ticket: str) -> Ticket | None:
        entry = self.tickets.pop(ticket, None)
        return entry if entry and entry.expires > time.monotonic() else None

    def available(self, frame_type: str, topic: str) -> bool:
        return any(c.subscribed(frame_type, topic) for c in self.connections.values())

    async def send(
        self, frame_type: str, topic: str, headers: dict[str, str], data: str, timeout: float = ACK_TIMEOUT
    ) -> tuple[Connection | None, Ack | None]:
        """Send one frame to a random subscribed connection and wait for its ack (None on timeout/close)."""
        candidates = [c for c in self.connections.values() if c.subscribed(frame_type, topic)]
        if not candidates:
            return None, None
        conn = random.choice(candidates)
        message_id = secrets.token_hex(16)
        frame = {
            "specVersion": "1.0",
            "type": frame_type,
            "headers": {
                **headers,
                "topic": topic,
                "messageId": message_id,
                "contentType": "application/json",
                "time": str(int(time.time() * 1000)),
                "connectionId": conn.id,
            },
            "data": data,
        }
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        conn.pending[message_id] = future
        started = time.monotonic()
        try:
            await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))
            conn.frames_sent += 1
            raw = await asyncio.wait_for(future, timeout)
        except (TimeoutError, ConnectionError, RuntimeError):
            return conn, None
        finally:
            conn.pending.pop(message_id, None)
        elapsed = int((time.monotonic() - started) * 1000)
        ack_data: Any = raw.get("data")
        if isinstance(ack_data, str):
            with contextlib.suppress(ValueError):  # keep a non-JSON ack as the raw string
                ack_data = json.loads(ack_data)
        code = raw.get("code")
        return conn, Ack(
            code if isinstance(code, int) else 0, str(raw.get("message") or ""), ack_data, elapsed, conn.id
        )

    async def disconnect_all(self, polite: bool, grace: float = DISCONNECT_GRACE) -> int:
        """Close every connection, after a SYSTEM `disconnect` frame when `polite` (the client closes itself)."""
        connections = list(self.connections.values())
        for conn in connections:
            if polite:
                frame = {
                    "specVersion": "1.0",
                    "type": "SYSTEM",
                    "headers": {
                        "topic": "disconnect",
                        "messageId": secrets.token_hex(16),
                        "contentType": "application/json",
                        "time": str(int(time.time() * 1000)),
                    },
                    "data": json.dumps({"reason": "sandbox requested a reconnect"}),
                }
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_str(json.dumps(frame))
        if polite:
            deadline = time.monotonic() + grace
            while any(c.id in self.connections for c in connections) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        for conn in connections:
            if conn.id not in self.connections:
                continue
            if polite or conn.transport is None:
                await conn.ws.close(code=1000, message=b"disconnect")
            else:
                conn.transport.abort()  # no close frame: what a dropped network looks like to the client
        return len(connections)


def _subscriptions(raw: Any) -> set[tuple[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "invalidParameter.subscriptions", "subscriptions不能为空")
    subs = set()
    for item in raw:
        if not isinstance(item, dict) or item.get("type") not in ("EVENT", "CALLBACK", "SYSTEM"):
            raise ApiError(400, "invalidParameter.subscriptions", "subscription的type只能是EVENT或CALLBACK")
        if not isinstance(item.get("topic"), str) or not item["topic"]:
            raise ApiError(400, "invalidParameter.subscriptions", "subscription缺少topic")
        subs.add((item["type"], item["topic"]))
    return subs


@routes.post("/v1.0/gateway/connections/open")
async def open_connection(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    if body.get("clientId") != state.settings.app_key or body.get("clientSecret") != state.settings.app_secret:
        raise ApiError(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    ticket = state.stream.issue_ticket(_subscriptions(body.get("subscriptions")), str(body.get("ua") or ""))
    return json_response({"endpoint": f"ws://{request.host}/connect", "ticket": ticket})


@routes.get("/connect")
async def connect(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    ticket = state.stream.take_ticket(request.query.get("ticket", ""))
    if ticket is None:
        return json_response({"code": "invalidTicket", "message": "ticket无效或已使用"}, status=401)
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    conn = Connection(secrets.token_hex(8), ws, ticket.subscriptions, ticket.ua, int(time.time() * 1000))
    conn.transport = request.transport
    state.stream.connections[conn.id] = conn
    log.info("stream connection %s opened (%s)", conn.id, ", ".join(f"{t}:{p}" for t, p in sorted(conn.subscriptions)))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                continue
            message_id = (frame.get("headers") or {}).get("messageId") if isinstance(frame, dict) else None
            future = conn.pending.get(message_id or "")
            if future is not None and not future.done():
                future.set_result(frame)
    finally:
        state.stream.connections.pop(conn.id, None)
        for future in conn.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("stream connection closed"))
        log.info("stream connection %s closed", conn.id)
    return ws
