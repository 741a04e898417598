"""Stream mode with the official `dingtalk_stream` SDK (a real client process) and a raw protocol client.

The SDK runs in a subprocess with DINGTALK_OPENAPI_ENDPOINT pointing at the sandbox, as the workbench's Stream
worker would (the SDK reads that variable at import time, so a subprocess is also the only clean way to set it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.support.sandbox import SandboxProcess

KEY, SECRET = "dingsandboxappkey001", "sandbox-app-secret-not-for-production"

SDK_CLIENT = r"""
import json, logging, os, sys
import dingtalk_stream
from dingtalk_stream import AckMessage

out = open(sys.argv[1], "a", buffering=1)

class Events(dingtalk_stream.EventHandler):
    async def process(self, event):
        out.write(json.dumps({"kind": "event", "type": event.headers.event_type, "id": event.headers.event_id,
                              "corp": event.headers.event_corp_id, "data": event.data}) + "\n")
        return AckMessage.STATUS_OK, "OK"

class Cards(dingtalk_stream.CallbackHandler):
    async def process(self, message):
        out.write(json.dumps({"kind": "card", "data": message.data}) + "\n")
        params = json.loads(message.data["content"])["cardPrivateData"]["params"]
        reply = {"cardData": {"cardParamMap": {"status": "已处理", "by": message.data["userId"], **params}},
                 "cardUpdateOptions": {"updateCardDataByKey": True}}
        return AckMessage.STATUS_OK, reply

logging.basicConfig(level=logging.WARNING)
client = dingtalk_stream.DingTalkStreamClient(dingtalk_stream.Credential(sys.argv[2], sys.argv[3]))
client.register_all_event_handler(Events())
client.register_callback_handler(dingtalk_stream.CallbackHandler.TOPIC_CARD_CALLBACK, Cards())
client.start_forever()
"""


@pytest.fixture(scope="module")
def stream_sandbox(receiver) -> Iterator[SandboxProcess]:
    args = ["--scale", "small", "--qps", "100000", "--events", "auto", "--retry-delays", "0.3,0.6"]
    with SandboxProcess(*args, "--callback-url", f"{receiver.url}/dingtalk/callback") as process:
        yield process


@pytest.fixture(scope="module")
def sdk_client(stream_sandbox: SandboxProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Start the official SDK against the sandbox; yields the file its handlers write what they received to."""
    folder = tmp_path_factory.mktemp("sdk")
    script, output = folder / "client.py", folder / "received.jsonl"
    script.write_text(SDK_CLIENT)
    output.touch()
    env = {**os.environ, "DINGTALK_OPENAPI_ENDPOINT": stream_sandbox.url}
    with (folder / "client.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(output), KEY, SECRET], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 20
        while not stream_sandbox.admin("GET", "stream").json()["connections"]:
            assert proc.poll() is None, (folder / "client.log").read_text()
            assert time.monotonic() < deadline, "the SDK did not connect"
            time.sleep(0.1)
        yield output
    finally:
        proc.terminate()
        proc.wait(10)


def _received(output: Path, kind: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, output.read_text().splitlines()) if r["kind"] == kind]


def _api(sandbox: SandboxProcess, method: str, path: str, body: Any) -> requests.Response:
    token = requests.get(f"{sandbox.url}/gettoken", params={"appkey": KEY, "appsecret": SECRET}).json()["access_token"]
    return requests.request(method, sandbox.url + path, json=body, headers={"x-acs-dingtalk-access-token": token})


def test_auto_mode_pushes_over_http_until_a_stream_client_connects(stream_sandbox: SandboxProcess, receiver) -> None:
    assert not stream_sandbox.admin("GET", "stream").json()["connections"], "a stream client is still connected"
    delivery = stream_sandbox.admin("POST", "events", json={"event_type": "org_change", "data": {"x": 1}}).json()
    assert delivery["delivery"]["attempts"][0]["channel"] == "http"


def test_later_ack_is_redelivered(stream_sandbox: SandboxProcess) -> None:
    """A raw protocol client: answer LATER first, SUCCESS on the redelivery. Runs before the SDK connects."""
    assert not stream_sandbox.admin("GET", "stream").json()["connections"]
    opened = requests.post(
        f"{stream_sandbox.url}/v1.0/gateway/connections/open",
        json={"clientId": KEY, "clientSecret": SECRET, "subscriptions": [{"type": "EVENT", "topic": "*"}]},
    ).json()
    seen: list[str] = []
    ready = threading.Event()

    async def run() -> None:
        url = f"{opened['endpoint']}?ticket={opened['ticket']}"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            ready.set()
            async for msg in ws:
                frame = json.loads(msg.data)
                status = "LATER" if not seen else "SUCCESS"
                seen.append(frame["headers"]["eventId"])
                data = json.dumps({"status": status})
                await ws.send_str(json.dumps({"code": 200, "headers": frame["headers"], "message": "OK", "data": data}))
                if len(seen) == 2:
                    return

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    assert ready.wait(10)
    reused = requests.get(f"{stream_sandbox.url}/connect", params={"ticket": opened["ticket"]})
    assert reused.status_code == 401  # tickets are single-use
    stream_sandbox.admin("POST", "events", json={"event_type": "raw_test", "data": {}})
    thread.join(10)
    assert len(seen) == 2 and seen[0] == seen[1]  # the same event, redelivered
    deliveries = stream_sandbox.admin("GET", "deliveries", params={"event_type": "raw_test"}).json()["deliveries"]
    (mine,) = [d for d in deliveries if d["event_id"] == seen[0]]
    assert [a["ok"] for a in mine["attempts"]][:2] == [False, True]
    assert mine["attempts"][0]["detail"] == "client answered LATER"


def test_sdk_receives_events(stream_sandbox: SandboxProcess, sdk_client: Path) -> None:
    data = {"timeStamp": str(int(time.time() * 1000)), "userId": ["u-stream-1"]}
    delivery = stream_sandbox.admin("POST", "events", json={"event_type": "user_add_org", "data": data}).json()
    delivery = delivery["delivery"]
    assert delivery["outcome"] == "delivered", delivery
    assert delivery["attempts"][0]["channel"] == "stream"
    (event,) = [e for e in _received(sdk_client, "event") if e["id"] == delivery["event_id"]]
    assert event["type"] == "user_add_org" and event["data"] == data and event["corp"] == "dingsandboxcorp00001"


def test_sdk_answers_card_callbacks(stream_sandbox: SandboxProcess, sdk_client: Path) -> None:
    userid = stream_sandbox.admin("GET", "truth").json()["users"][0]["userid"]
    out = f"stream-{uuid.uuid4().hex[:8]}"
    body = {
        "cardTemplateId": "tpl.schema",
        "outTrackId": out,
        "cardData": {"cardParamMap": {"title": "危急值"}},
        "openSpaceId": f"dtv1.card//IM_ROBOT.{userid}",
        "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT"},
        "callbackType": "STREAM",
    }
    assert _api(stream_sandbox, "POST", "/v1.0/card/instances/createAndDeliver", body).status_code == 200
    click = {"userid": userid, "action_id": "ack", "params": {"note": "已电话通知"}}
    resp = stream_sandbox.admin("POST", f"cards/{out}/click", json=click)
    assert resp.status_code == 200, resp.text
    card = resp.json()["card"]["cardData"]["cardParamMap"]
    assert card == {"title": "危急值", "status": "已处理", "by": userid, "note": "已电话通知"}
    (seen,) = [c for c in _received(sdk_client, "card") if c["data"]["outTrackId"] == out]
    assert seen["data"]["type"] == "actionCallback"


def test_contact_changes_go_over_stream(stream_sandbox: SandboxProcess, sdk_client: Path) -> None:
    body = stream_sandbox.admin("POST", "changes", json={"count": 4, "seed": 9}).json()
    assert body["count"] > 0 and body["delivered"] == body["count"]
    assert {e["delivery"]["attempts"][0]["channel"] for e in body["events"]} == {"stream"}
    received = {e["id"]: e for e in _received(sdk_client, "event")}
    for event in body["events"]:
        data = received[event["delivery"]["event_id"]]["data"]
        ids = data.get("deptId") if event["event_type"].startswith("org_dept") else data.get("userId")
        assert ids == (event["dept_ids"] or event["user_ids"]) and data["timeStamp"]


def test_sdk_keeps_up_with_a_burst(stream_sandbox: SandboxProcess, sdk_client: Path) -> None:
    """Concurrent events and card callbacks: none is lost or left unacknowledged (websockets 17 with SDK 0.24.3)."""
    userid = stream_sandbox.admin("GET", "truth").json()["users"][1]["userid"]
    cards = []
    for i in range(10):
        out = f"burst-{uuid.uuid4().hex[:8]}-{i}"
        body = {
            "cardTemplateId": "tpl",
            "outTrackId": out,
            "cardData": {"cardParamMap": {}},
            "openSpaceId": f"dtv1.card//IM_ROBOT.{userid}",
            "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT"},
            "callbackType": "STREAM",
        }
        _api(stream_sandbox, "POST", "/v1.0/card/instances/createAndDeliver", body)
        cards.append(out)

    def event(i: int) -> str:
        body = {"event_type": "user_modify_org", "data": {"userId": [f"burst{i}"]}}
        return stream_sandbox.admin("POST", "events", json=body).json()["delivery"]["outcome"]

    def click(out: str) -> int:
        return stream_sandbox.admin("POST", f"cards/{out}/click", json={"userid": userid, "action_id": "a"}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        events = pool.map(event, range(100))
        clicks = pool.map(click, cards)
        assert list(events) == ["delivered"] * 100
        assert list(clicks) == [200] * 10
