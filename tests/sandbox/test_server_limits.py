"""Throttling per API at a low --qps with each family's real codes, and fault injection without side effects."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.sandbox import SandboxProcess

KEY, SECRET = "dingsandboxappkey001", "sandbox-app-secret-not-for-production"


@pytest.fixture(scope="module")
def slow() -> Iterator[SandboxProcess]:
    with SandboxProcess("--scale", "small", "--qps", "5") as process:
        yield process


@pytest.fixture(scope="module")
def flaky() -> Iterator[SandboxProcess]:
    with SandboxProcess("--scale", "small", "--qps", "100000", "--fault-rate", "0.5", "--fault-delay", "0.3") as p:
        yield p


def _burst(fn, n: int) -> list:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def test_throttling_codes_for_both_families(slow: SandboxProcess) -> None:
    url = slow.url
    session = requests.Session()
    token = session.get(f"{url}/gettoken", params={"appkey": KEY, "appsecret": SECRET}).json()["access_token"]
    slow.admin("POST", "stats/reset")

    def oapi() -> dict:
        return session.post(
            f"{url}/topapi/v2/department/get", params={"access_token": token}, json={"dept_id": 1}
        ).json()

    def api() -> requests.Response:
        headers = {"x-acs-dingtalk-access-token": token}
        return session.post(f"{url}/v1.0/robot/oToMessages/batchSend", json={"robotCode": KEY}, headers=headers)

    replies = _burst(oapi, 30)
    throttled = [r for r in replies if r["errcode"] == 90018]
    assert throttled and len(replies) - len(throttled) >= 5
    assert all(r["errcode"] in (0, 90018) for r in replies)
    responses = _burst(api, 30)
    limited = [r for r in responses if r.status_code == 403]
    assert limited and all(r.json()["code"] == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi" for r in limited)
    assert all(r.status_code in (400, 403) for r in responses)  # 400: the body is incomplete, but it got through
    stats = slow.admin("GET", "stats").json()["apis"]
    dept = stats["/topapi/v2/department/get"]
    assert dept["accepted"] + dept["throttled"] == 30 and dept["throttled"] == len(throttled)
    assert dept["max_accepted_in_any_1s"] == 5
    assert stats["/v1.0/robot/oToMessages/batchSend"]["max_accepted_in_any_1s"] == 5
    assert "/_sandbox/stats" not in stats


def test_faults_have_no_side_effects(flaky: SandboxProcess) -> None:
    url = flaky.url
    session = requests.Session()
    token = None
    while token is None:  # the token endpoint is faulty too: retry as a client must
        resp = session.get(f"{url}/gettoken", params={"appkey": KEY, "appsecret": SECRET}, timeout=5)
        if resp.status_code == 200 and resp.json().get("errcode") == 0:
            token = resp.json()["access_token"]
    userid = flaky.admin("GET", "truth").json()["users"][0]["userid"]
    outcomes = {"ok": 0, "gateway": 0, "busy": 0}
    for i in range(40):
        resp = session.post(
            f"{url}/v1.0/robot/oToMessages/batchSend",
            json={
                "robotCode": KEY,
                "userIds": [userid],
                "msgKey": "sampleText",
                "msgParam": json.dumps({"content": i}),
            },
            headers={"x-acs-dingtalk-access-token": token},
            timeout=5,
        )
        if resp.status_code == 200:
            outcomes["ok"] += 1
        elif resp.status_code == 503:
            assert resp.json()["code"] == "operationTimeout"
            outcomes["gateway"] += 1
        else:
            assert resp.status_code == 500 and resp.json()["code"] == "system.busy"
            outcomes["busy"] += 1
    for _ in range(20):
        resp = session.post(f"{url}/topapi/v2/department/get", params={"access_token": token}, json={"dept_id": 1})
        if resp.status_code == 502:
            assert "502 Bad Gateway" in resp.text
        else:
            assert resp.json()["errcode"] in (0, -1)
    assert outcomes["ok"] and outcomes["gateway"] and outcomes["busy"], outcomes
    stored = flaky.admin("GET", "messages", params={"kind": "robot_oto"}).json()["messages"]
    assert len(stored) == outcomes["ok"]  # a faulted call never stored a message
    stats = flaky.admin("GET", "stats").json()["apis"]["/v1.0/robot/oToMessages/batchSend"]
    assert stats["faults"] == 40 - outcomes["ok"] and stats["accepted"] == outcomes["ok"]


def test_latency_holds_every_api_call() -> None:
    """`--latency` stands for the network to DingTalk, which loopback lacks: a lower bound, so no flaky timing."""
    with SandboxProcess("--scale", "small", "--qps", "1000", "--latency", "0.25") as sandbox:
        session = requests.Session()
        started = time.monotonic()
        token = session.get(f"{sandbox.url}/gettoken", params={"appkey": KEY, "appsecret": SECRET}).json()
        reply = session.post(
            f"{sandbox.url}/topapi/v2/department/get",
            params={"access_token": token["access_token"]},
            json={"dept_id": 1},
        ).json()
        assert reply["errcode"] == 0
        assert time.monotonic() - started >= 0.5  # two calls, each held 0.25 s
        stats = sandbox.admin("GET", "stats").json()["apis"]
        assert stats["/topapi/v2/department/get"]["accepted"] == 1
