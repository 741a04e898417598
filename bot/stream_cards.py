"""Card clicks over Stream (reference/dingtalk.md §3.5, §5.4): DingTalk's recommended channel for card callbacks.

A card sent with `callbackType: STREAM` reports its clicks as CALLBACK frames on the topic
`/v1.0/card/instances/callback` of the Stream connection, with the same actionCallback payload as the HTTP
callback. They go through the same `bot.cards.handle_click` (claimed once per card, answered from the database),
and the answer travels back in the ack (`{"response": <card data>}`, which the SDK wraps). No signature to check:
the connection itself was opened with the app's credentials.

The Stream worker (`flask stream`, `workbench/dingtalk/stream.py`) registers the handlers that parts put in
`app.extensions["workbench.stream_callbacks"]` (topic → factory taking the app); `bot.init_app` puts this one there.
`register(client, app)` does the same for a client built elsewhere (tests).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flask import Flask

from bot import cards
from workbench.errors import ApiError

log = logging.getLogger(__name__)

TOPIC = "/v1.0/card/instances/callback"


def apply_click(app: Flask, payload: Any) -> tuple[int, Any]:
    """Apply one click from a Stream frame: (ack code, response). Refusals answer 400 with the reason, as the
    HTTP callback answers with an error status; DingTalk then leaves the card as it was."""
    if not isinstance(payload, dict):
        return 400, {"error": "invalid_callback", "message": "回调内容必须是JSON对象"}
    with app.app_context():
        try:
            return 200, cards.handle_click(payload)
        except ApiError as exc:
            log.info("card click refused", extra={"code": exc.code})
            return 400, {"error": exc.code, "message": exc.message}


def make_handler(app: Flask) -> Any:
    """A `dingtalk_stream.CallbackHandler` for card clicks (imported here: the SDK reads its endpoint at import)."""
    import dingtalk_stream

    class CardCallbacks(dingtalk_stream.CallbackHandler):
        async def process(self, message: dingtalk_stream.CallbackMessage) -> tuple[int, Any]:
            # The database work runs in a thread so that one slow click does not stall the connection's other frames.
            try:
                return await asyncio.to_thread(apply_click, app, message.data)
            except Exception:
                log.exception("card click over stream failed")
                return dingtalk_stream.AckMessage.STATUS_SYSTEM_EXCEPTION, {"error": "internal"}

    return CardCallbacks()


def register(client: Any, app: Flask) -> None:
    """Subscribe `client` (a `DingTalkStreamClient`) to card clicks; call before it starts."""
    client.register_callback_handler(TOPIC, make_handler(app))
