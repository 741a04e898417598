"""Fixtures for the sandbox server tests: a stand-in workbench receiving callbacks, and sandbox processes.

The receiver implements the workbench's side of the HTTP-push crypto from the reference snippet, deliberately
not importing `sandbox.crypto`: a bug shared by both sides would otherwise pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.support.sandbox import SandboxProcess

APP_KEY = os.environ.get("DINGTALK_APP_KEY") or "dingsandboxappkey001"
APP_SECRET = os.environ.get("DINGTALK_APP_SECRET") or "sandbox-app-secret-not-for-production"
AGENT_ID = os.environ.get("DINGTALK_AGENT_ID") or "3000000001"
CORP_ID = os.environ.get("DINGTALK_CORP_ID") or "dingsandboxcorp00001"
TOKEN = os.environ.get("DINGTALK_CALLBACK_TOKEN") or "sandboxcallbacktoken"
AES_KEY = os.environ.get("DINGTALK_CALLBACK_AES_KEY") or "c2FuZGJveC1jYWxsYmFjay1hZXMta2V5LTMyYnl0ZXM"


def ref_sign(token: str, ts: str, nonce: str, enc: str) -> str:
    return hashlib.sha1("".join(sorted([token, ts, nonce, enc])).encode()).hexdigest()


def ref_decrypt(aes_key: str, enc: str, owner: str) -> str:
    key = base64.b64decode(aes_key + "=")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(base64.b64decode(enc)) + dec.finalize()
    plain = plain[: -plain[-1]]
    n = struct.unpack(">I", plain[16:20])[0]
    assert plain[20 + n :].decode() == owner, "owner key mismatch"
    return plain[20 : 20 + n].decode()


def ref_encrypt(aes_key: str, msg: str, owner: str, rnd16: bytes) -> str:
    key = base64.b64decode(aes_key + "=")
    raw = rnd16 + struct.pack(">I", len(msg.encode())) + msg.encode() + owner.encode()
    pad = 32 - len(raw) % 32
    raw += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(raw) + enc.finalize()).decode()


class Receiver:
    """A tiny workbench: `/dingtalk/callback` (HTTP push) and `/card` (card callbacks) on a loopback port.

    `mode` selects the push reply: "ok" (encrypted success), "plain" (a bare 200 "success"), "badsig".
    `card_reply` is returned to card callbacks (a dict, or a callable taking the payload).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.cards: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.mode = "ok"
        self.card_reply: dict[str, Any] | Callable[[dict[str, Any]], Any] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if url.path == "/dingtalk/callback":
                    self._reply(200, receiver.on_push(parse_qs(url.query), body))
                elif url.path == "/card":
                    self._reply(200, receiver.on_card(dict(self.headers), body))
                else:
                    self._reply(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on_push(self, query: dict[str, list[str]], body: dict[str, Any]) -> bytes:
        sig, ts, nonce = (query.get(k, [""])[0] for k in ("signature", "timestamp", "nonce"))
        enc = body.get("encrypt", "")
        if ref_sign(TOKEN, ts, nonce, enc) != sig:
            self.errors.append("bad signature on push")
            return b"{}"
        event = json.loads(ref_decrypt(AES_KEY, enc, APP_KEY))
        with self.lock:
            self.events.append(event)
        if self.mode == "plain":
            return b"success"
        reply_enc = ref_encrypt(AES_KEY, "success", APP_KEY, secrets.token_hex(8).encode())
        reply_ts, reply_nonce = str(int(time.time() * 1000)), secrets.token_hex(6)
        signature = ref_sign(TOKEN, reply_ts, reply_nonce, reply_enc)
        if self.mode == "badsig":
            signature = "0" * 40
        reply = {"msg_signature": signature, "timeStamp": reply_ts, "nonce": reply_nonce, "encrypt": reply_enc}
        return json.dumps(reply).encode()

    def on_card(self, headers: dict[str, str], body: dict[str, Any]) -> bytes:
        with self.lock:
            self.cards.append({"headers": {k.lower(): v for k, v in headers.items()}, "body": body})
        reply = self.card_reply(body) if callable(self.card_reply) else self.card_reply
        return json.dumps(reply).encode()

    def wait_events(self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [e for e in self.events if predicate(e)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} matching events, got {len(found)}: {self.events[-5:]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Api:
    """Thin helpers over the sandbox: an app token and the two families' calling conventions."""

    def __init__(self, process: SandboxProcess) -> None:
        self.process = process
        self.url = process.url
        self.session = requests.Session()
        self.session.trust_env = False
        self._token: str | None = None
        self.app_key, self.app_secret, self.agent_id, self.corp_id = APP_KEY, APP_SECRET, AGENT_ID, CORP_ID

    @property
    def token(self) -> str:
        if self._token is None:
            resp = self.session.get(f"{self.url}/gettoken", params={"appkey": APP_KEY, "appsecret": APP_SECRET})
            self._token = resp.json()["access_token"]
        return self._token

    def oapi(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = self.session.post(f"{self.url}{path}", params={"access_token": self.token}, json=body or {})
        assert resp.status_code == 200, resp.text
        return resp.json()

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        headers = {"x-acs-dingtalk-access-token": self.token}
        return self.session.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=30, **kwargs)

    def admin(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=30, **kwargs)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    yield recv
    recv.close()


@pytest.fixture(scope="session")
def sandbox_process(receiver: Receiver) -> Iterator[SandboxProcess]:
    """The main sandbox for these tests: no throttling in the way, quick redelivery, pushes to the receiver."""
    args = ["--scale", "small", "--seed", "3", "--qps", "100000", "--retry-delays", "0.3,0.6", "--events", "http"]
    with SandboxProcess(*args, "--callback-url", f"{receiver.url}/dingtalk/callback") as process:
        yield process


@pytest.fixture(scope="session")
def sb(sandbox_process: SandboxProcess) -> Api:
    return Api(sandbox_process)


@pytest.fixture
def truth(sb: Api) -> dict[str, Any]:
    return sb.admin("GET", "truth").json()


@pytest.fixture
def fresh_receiver(receiver: Receiver) -> Iterator[Receiver]:
    """The receiver with its mode and card reply reset afterwards."""
    yield receiver
    receiver.mode = "ok"
    receiver.card_reply = {}
