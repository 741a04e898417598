"""Event delivery to the workbench: over Stream when a client is connected (auto) or by encrypted HTTP push.

Each event gets one delivery record listing every attempt. The first attempt is awaited so admin endpoints can
report the outcome; failures are retried after `--retry-delays` (DingTalk: 10 s, then 30 s). Events caused by API
calls (approval start) are delivered in the background, never inside the API call, as DingTalk does — a
single-threaded workbench calling the API must not deadlock waiting for its own callback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from sandbox import push
from sandbox.stream import Ack, StreamHub

if TYPE_CHECKING:
    from sandbox.settings import Settings

log = logging.getLogger("sandbox.events")


@dataclass(slots=True)
class Attempt:
    n: int
    at: int
    channel: str
    ok: bool
    detail: str
    elapsed_ms: int
    status: int | None = None

    def view(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "at": self.at,
            "channel": self.channel,
            "ok": self.ok,
            "detail": self.detail,
            "elapsed_ms": self.elapsed_ms,
            "status": self.status,
        }


@dataclass(slots=True)
class Delivery:
    id: int
    event_id: str
    event_type: str
    born: int
    data: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "pending"  # pending | delivered | retrying | failed

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "born": self.born,
            "data": self.data,
            "outcome": self.outcome,
            "attempts": [a.view() for a in self.attempts],
        }


def ack_problem(ack: Ack | None) -> str | None:
    """Why a Stream EVENT ack is not a success: protocol `{"status":"SUCCESS"}` and the Python SDK's echo both are."""
    if ack is None:
        return "no ack within 5 s"
    if ack.code != 200:
        return f"ack code {ack.code} {ack.message}".strip()
    if isinstance(ack.data, dict) and ack.data.get("status") == "LATER":
        return "client answered LATER"
    return None


class EventBus:
    def __init__(self, settings: Settings, hub: StreamHub) -> None:
        self.settings = settings
        self.hub = hub
        self.session: aiohttp.ClientSession | None = None
        self.deliveries: list[Delivery] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self._in_order = asyncio.Lock()
        self.unified_app_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dingtalk-sandbox:{settings.app_key}"))

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.session is not None:
            await self.session.close()

    def channel(self) -> str:
        mode = self.settings.events
        if mode == "auto":
            return "stream" if self.hub.available("EVENT", "*") else "http"
        return mode

    def new_delivery(self, event_type: str, data: dict[str, Any]) -> Delivery:
        delivery = Delivery(len(self.deliveries) + 1, secrets.token_hex(16), event_type, int(time.time() * 1000), data)
        self.deliveries.append(delivery)
        return delivery

    async def publish(self, event_type: str, data: dict[str, Any]) -> Delivery:
        """Deliver an event, awaiting the first attempt; failures are retried in the background."""
        delivery = self.new_delivery(event_type, data)
        await self._attempt(delivery)
        if delivery.outcome != "delivered":
            delivery.outcome = "retrying" if self.settings.retry_delays else "failed"
            self._spawn(self._retry(delivery))
        return delivery

    def publish_later(self, event_type: str, data: dict[str, Any]) -> Delivery:
        """Deliver an event in the background (for events caused by an API call)."""
        delivery = self.new_delivery(event_type, data)

        async def run() -> None:
            async with self._in_order:  # first attempts keep the order the events happened in
                await self._attempt(delivery)
            if delivery.outcome != "delivered":
                await self._retry(delivery)

        self._spawn(run())
        return delivery

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _retry(self, delivery: Delivery) -> None:
        for delay in self.settings.retry_delays:
            delivery.outcome = "retrying"
            await asyncio.sleep(delay)
            await self._attempt(delivery)
            if delivery.outcome == "delivered":
                return
        delivery.outcome = "failed"
        log.warning(
            "event %s (%s) failed after %d attempts", delivery.event_id, delivery.event_type, len(delivery.attempts)
        )

    def http_plaintext(self, delivery: Delivery) -> dict[str, Any]:
        """The flat console format of an HTTP push (§2.3): EventType, CorpId, eventId … plus the event's fields."""
        return {
            "EventType": delivery.event_type,
            "EventTime": str(delivery.born),
            "CorpId": self.settings.corp_id,
            "eventId": delivery.event_id,
            **delivery.data,
        }

    async def _attempt(self, delivery: Delivery) -> Attempt:
        channel = self.channel()
        n = len(delivery.attempts) + 1
        at = int(time.time() * 1000)
        if channel == "stream":
            headers = {
                "eventType": delivery.event_type,
                "eventId": delivery.event_id,
                "eventCorpId": self.settings.corp_id,
                "eventBornTime": str(delivery.born),
                "eventUnifiedAppId": self.unified_app_id,
                "appId": self.unified_app_id,
            }
            data = json.dumps(delivery.data, ensure_ascii=False)
            started = time.monotonic()
            conn, ack = await self.hub.send("EVENT", "*", headers, data)
            elapsed = int((time.monotonic() - started) * 1000)
            problem = "no stream client connected" if conn is None else ack_problem(ack)
            attempt = Attempt(n, at, "stream", problem is None, problem or "SUCCESS", elapsed)
        else:
            assert self.session is not None, "EventBus.start() was not called"
            text = json.dumps(self.http_plaintext(delivery), ensure_ascii=False)
            result = await push.push(self.session, self.settings, text)
            attempt = Attempt(n, at, "http", result.ok, result.detail, result.elapsed_ms, result.status)
        delivery.attempts.append(attempt)
        delivery.outcome = "delivered" if attempt.ok else "pending"
        log.info(
            "event %s %s attempt %d via %s: %s",
            delivery.event_type,
            delivery.event_id,
            n,
            attempt.channel,
            "ok" if attempt.ok else attempt.detail,
        )
        return attempt

    async def check_url(self) -> dict[str, Any]:
        """What the console's 保存 button does: push `check_url` and require a valid reply within 1.5 s."""
        assert self.session is not None
        result = await push.push(self.session, self.settings, json.dumps({"EventType": "check_url"}))
        in_time = result.elapsed_ms <= 1500
        return {
            "ok": result.ok and in_time,
            "valid_reply": result.ok,
            "within_1500ms": in_time,
            "elapsed_ms": result.elapsed_ms,
            "status": result.status,
            "detail": result.detail if not result.ok or in_time else f"回复用时 {result.elapsed_ms} ms，超过 1.5 秒",
            "callback_url": self.settings.callback_url,
        }
