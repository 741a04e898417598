"""`POST /dingtalk/callback`: DingTalk's HTTP event push (signed, AES-encrypted; reference/dingtalk.md §3.2).

Everything is checked before anything is stored: a bad signature, a stale timestamp, an undecryptable body or a
wrong owner key is answered 4xx and leaves nothing behind but a log line. DingTalk wants the encrypted
`success` within 1.5 s, so the event is only recorded here and handled by a job.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, current_app, jsonify, request

from workbench.dingtalk.crypto import CallbackCrypto, CallbackCryptoError
from workbench.dingtalk.events import event_from_push, ingest
from workbench.errors import error_response

log = logging.getLogger(__name__)
bp = Blueprint("dingtalk_callback", __name__)

MAX_BODY = 256 * 1024
MAX_CLOCK_SKEW = 15 * 60  # seconds; DingTalk retries within a minute, so older pushes are replays


def _crypto() -> CallbackCrypto:
    return current_app.extensions["workbench.callback_crypto"]


def _reject(status: int, code: str, message: str, field: str | None = None):
    log.warning("callback rejected: %s", code)
    return error_response(code, message, status, field)


def _timestamp_fresh(timestamp: str) -> bool:
    try:
        value = int(timestamp)
    except ValueError:
        return False
    seconds = value / 1000 if value > 10**11 else value
    return abs(time.time() - seconds) <= MAX_CLOCK_SKEW


@bp.post("/dingtalk/callback")
def receive():
    args = request.args
    signature = args.get("signature") or args.get("msg_signature")
    timestamp = args.get("timestamp") or args.get("timeStamp")
    nonce = args.get("nonce")
    for name, value in (("signature", signature), ("timestamp", timestamp), ("nonce", nonce)):
        if not value:
            return _reject(400, "missing_parameter", f"缺少参数 {name}", name)
    if (request.content_length or 0) > MAX_BODY:
        return _reject(413, "body_too_large", "回调内容过大")
    body = request.get_json(silent=True)
    encrypted = body.get("encrypt") if isinstance(body, dict) else None
    if not isinstance(encrypted, str) or not encrypted:
        return _reject(400, "missing_parameter", "请求体缺少 encrypt", "encrypt")
    if not _timestamp_fresh(timestamp):
        return _reject(400, "stale_timestamp", "时间戳无效或已过期", "timestamp")

    crypto = _crypto()
    try:
        crypto.verify(signature, timestamp, nonce, encrypted)
        plaintext = crypto.decrypt(encrypted)
        payload = json.loads(plaintext)
    except CallbackCryptoError as exc:
        return _reject(401, "bad_signature" if "signature" in str(exc) else "undecryptable", f"回调校验失败: {exc}")
    except ValueError:
        return _reject(400, "bad_payload", "回调内容不是 JSON")
    if not isinstance(payload, dict):
        return _reject(400, "bad_payload", "回调内容不是 JSON 对象")

    event = event_from_push(payload, plaintext)
    if not event.event_type:
        return _reject(400, "bad_payload", "回调缺少 EventType", "EventType")
    if event.event_type != "check_url":
        try:
            ingest(event)
        except ValueError as exc:
            return _reject(400, "bad_payload", str(exc))
    return jsonify(crypto.reply("success", timestamp))
