"""HTTP push of events to the workbench (§3.2/§3.3), with the reply check DingTalk's console applies.

A delivery only counts when the reply is `{"msg_signature","timeStamp","nonce","encrypt"}`, the signature is
right and `encrypt` decrypts (under the same AES key and owner key) to `success`. Anything else — a plain 200, a
wrong signature, a slow reply — is a failed delivery, which is what makes the sandbox a real test of the callback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from sandbox import crypto
from sandbox.settings import Settings

PUSH_TIMEOUT = 5.0


@dataclass(slots=True)
class PushResult:
    ok: bool
    detail: str
    status: int | None
    elapsed_ms: int


def encrypt_event(settings: Settings, plaintext: str) -> tuple[dict[str, str], dict[str, str]]:
    """Query parameters and body of one push, encrypted with the app key as owner key (console-configured app)."""
    timestamp = str(int(time.time() * 1000))
    nonce = crypto.random_text(16)
    encrypted = crypto.encrypt(settings.aes_key, plaintext, settings.app_key)
    params = {
        "signature": crypto.signature(settings.callback_token, timestamp, nonce, encrypted),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return params, {"encrypt": encrypted}


def check_reply(settings: Settings, status: int, text: str) -> str | None:
    """Why the reply is not DingTalk's expected encrypted `success`, or None when it is."""
    if status != 200:
        return f"HTTP {status}"
    try:
        reply: Any = json.loads(text)
    except ValueError:
        return "HTTP请求结果校验返回字段值失败: 回复不是JSON"
    if not isinstance(reply, dict):
        return "HTTP请求结果校验返回字段值失败: 回复不是JSON对象"
    fields = ("msg_signature", "timeStamp", "nonce", "encrypt")
    missing = [f for f in fields if not isinstance(reply.get(f), str) or not reply.get(f)]
    if missing:
        return f"HTTP请求结果校验返回字段值失败: 缺少字段 {', '.join(missing)}"
    expected = crypto.signature(settings.callback_token, reply["timeStamp"], reply["nonce"], reply["encrypt"])
    if expected != reply["msg_signature"]:
        return "回复签名校验失败 (msg_signature)"
    try:
        plain = crypto.decrypt(settings.aes_key, reply["encrypt"], settings.app_key)
    except crypto.CryptoError as exc:
        return f"回复解密失败: {exc}"
    if plain != "success":
        return "回复解密后不是 success"
    return None


async def push(
    session: aiohttp.ClientSession, settings: Settings, plaintext: str, timeout: float = PUSH_TIMEOUT
) -> PushResult:
    """POST one encrypted event to the callback URL and judge the reply."""
    params, body = encrypt_event(settings, plaintext)
    started = time.monotonic()
    try:
        async with session.post(
            settings.callback_url, params=params, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            text = await resp.text()
            status = resp.status
    except TimeoutError:
        return PushResult(False, f"超时: {timeout:g} 秒内没有回复", None, int((time.monotonic() - started) * 1000))
    except aiohttp.ClientError as exc:
        return PushResult(False, f"连接失败: {exc}", None, int((time.monotonic() - started) * 1000))
    elapsed = int((time.monotonic() - started) * 1000)
    problem = check_reply(settings, status, text)
    return PushResult(problem is None, problem or "success", status, elapsed)
