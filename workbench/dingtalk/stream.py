"""The Stream worker (`flask stream`): DingTalk's recommended event channel, a WebSocket the official
`dingtalk-stream` SDK keeps open (reference/dingtalk.md §3.5). Events go through the same `ingest` as HTTP push:
recorded once, acknowledged, handled as jobs."""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import urlsplit

from flask import Flask

from workbench.dingtalk.events import Event, _born_at, ingest

log = logging.getLogger(__name__)


def event_from_stream(headers: object, data: dict) -> Event:
    return Event(
        event_id=str(headers.event_id),
        event_type=str(headers.event_type),
        corp_id=headers.event_corp_id,
        born_at=_born_at(headers.event_born_time),
        data=data or {},
        channel="stream",
    )


def run(app: Flask) -> None:
    """Connect to DingTalk (or the sandbox) and feed events to the router until interrupted."""
    settings = app.config["SETTINGS"].dingtalk
    # The SDK reads its endpoint from the environment at import time.
    os.environ["DINGTALK_OPENAPI_ENDPOINT"] = settings.api_base
    if settings.api_base.startswith("http://"):
        # A plain-ws endpoint (the sandbox): websockets>=15 would send ws:// through HTTPS_PROXY while requests
        # opens the ticket directly, and the connection would fail forever without a readable error.
        host = urlsplit(settings.api_base).hostname or ""
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), host]))
    import dingtalk_stream

    class Events(dingtalk_stream.EventHandler):
        async def raw_process(self, message: dingtalk_stream.EventMessage) -> dingtalk_stream.AckMessage:
            def record() -> None:
                with app.app_context():
                    ingest(event_from_stream(message.headers, message.data))

            # The protocol's EVENT ack carries {"status": "SUCCESS" | "LATER"}; the SDK's default echoes the
            # event instead, so the ack is built here. LATER makes DingTalk redeliver.
            ack = dingtalk_stream.AckMessage()
            ack.headers.message_id = message.headers.message_id
            ack.headers.content_type = "application/json"
            try:
                await asyncio.to_thread(record)
                ack.message, ack.data = "OK", {"status": "SUCCESS", "message": "OK"}
            except Exception:
                log.exception("stream event not recorded", extra={"event": message.headers.event_type})
                ack.message, ack.data = "LATER", {"status": "LATER", "message": "not recorded"}
            return ack

    client = dingtalk_stream.DingTalkStreamClient(
        dingtalk_stream.Credential(settings.app_key, settings.app_secret), logger=logging.getLogger("dingtalk_stream")
    )
    client.register_all_event_handler(Events())
    # Callback topics other parts subscribe (card clicks: bot.stream_cards), each with its own handler.
    for topic, make_handler in app.extensions.get("workbench.stream_callbacks", {}).items():
        client.register_callback_handler(topic, make_handler(app))
    log.info("stream worker connecting to %s", settings.api_base)
    client.start_forever()
