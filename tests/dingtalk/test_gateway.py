"""The gateway over real HTTP against a real sandbox process: both API families, the custom-robot webhook,
injected faults and throttling turned into successful calls, and typed errors."""

from __future__ import annotations

import dataclasses
import json
import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import urllib3
from alibabacloud_dingtalk.robot_1_0 import models as robot_models

from config.settings import DingTalkSettings, load_settings
from tests.support.sandbox import SandboxProcess
from workbench.dingtalk.errors import (
    CredentialsError,
    DingTalkError,
    QuotaExceededError,
    ThrottledError,
    TokenError,
    TransientError,
    api_error,
    oapi_error,
)
from workbench.dingtalk.gateway import DingTalkGateway, _pool

TOKEN_API = "/v1.0/oauth2/accessToken"
LIST_SUB = "/topapi/v2/department/listsub"
BATCH_SEND = "/v1.0/robot/oToMessages/batchSend"


def _settings(port: int, **changes: object) -> DingTalkSettings:
    return dataclasses.replace(load_settings({"SANDBOX_PORT": str(port)}, read_dotenv=False).dingtalk, **changes)


def _text_to(settings: DingTalkSettings, userid: str, text: str = "您有一条新的转诊申请") -> object:
    return robot_models.BatchSendOTORequest(
        robot_code=settings.app_key, user_ids=[userid], msg_key="sampleText", msg_param=json.dumps({"content": text})
    )


@pytest.fixture
def gateway(sandbox: SandboxProcess) -> Iterator[DingTalkGateway]:
    gateway = DingTalkGateway(_settings(sandbox.port))
    yield gateway
    gateway.close()


@pytest.fixture(scope="session")
def userid(sandbox: SandboxProcess) -> str:
    return sandbox.admin("GET", "truth").json()["users"][0]["userid"]


# -- both families -----------------------------------------------------------------------------------------------


def test_oapi_call_returns_the_reply(gateway: DingTalkGateway, sandbox: SandboxProcess) -> None:
    reply = gateway.oapi("/topapi/v2/user/list", {"dept_id": 1, "cursor": 0, "size": 10})
    assert reply["errcode"] == 0
    assert isinstance(reply["result"]["list"], list) and "has_more" in reply["result"]
    sub = gateway.oapi(LIST_SUB, {"dept_id": 1})["result"]
    truth = sandbox.admin("GET", "truth").json()["departments"]
    assert {d["dept_id"] for d in sub} == {d["dept_id"] for d in truth if d.get("parent_id") == 1}


def test_new_api_goes_through_the_sdk(gateway: DingTalkGateway, sandbox: SandboxProcess, userid: str) -> None:
    sandbox.admin("POST", "stats/reset")
    reply = gateway.api("robot_1_0", "batch_send_oto", _text_to(_settings(sandbox.port), userid, "新API测试"))
    assert reply.process_query_key and reply.invalid_staff_id_list == []
    apis = sandbox.admin("GET", "stats").json()["apis"]
    assert apis[TOKEN_API]["accepted"] == 1 and "/gettoken" not in apis  # the token came from oauth2_1_0 too
    inbox = sandbox.admin("GET", "messages", params={"userid": userid, "kind": "robot_oto"}).json()["messages"]
    assert inbox[-1]["content"] == {"content": "新API测试"}


def test_custom_robot_webhook_is_signed(gateway: DingTalkGateway, sandbox: SandboxProcess) -> None:
    robot = sandbox.admin("POST", "robots", json={"title": "医共体值班群"}).json()
    body = {"msgtype": "text", "text": {"content": "今日转诊 12 例"}}
    assert gateway.webhook(robot["access_token"], body, secret=robot["secret"])["errcode"] == 0
    with pytest.raises(DingTalkError) as caught:
        gateway.webhook(robot["access_token"], body, secret="SECwrong")
    assert caught.value.code == "310000"
    sent = sandbox.admin("GET", "messages", params={"kind": "robot_webhook"}).json()["messages"]
    assert [m["content"] for m in sent if m["conversation"] == robot["open_conversation_id"]] == [
        {"text": {"content": "今日转诊 12 例"}}
    ]


# -- typed errors ------------------------------------------------------------------------------------------------


def test_unknown_department_fails_at_once(gateway: DingTalkGateway, sandbox: SandboxProcess) -> None:
    token = gateway.access_token()
    sandbox.admin("POST", "stats/reset")
    with pytest.raises(DingTalkError) as caught:
        gateway.oapi("/topapi/v2/department/get", {"dept_id": 987654321})
    error = caught.value
    assert type(error) is DingTalkError
    assert (error.code, error.message, error.api) == ("60003", "部门不存在", "/topapi/v2/department/get")
    assert error.request_id and error.request_id in str(error)
    assert token not in str(error) and token not in repr(error)
    seen = sandbox.admin("GET", "stats").json()["apis"]["/topapi/v2/department/get"]
    assert seen["accepted"] + seen["throttled"] + seen["faults"] == 1  # no retries


def test_bad_credentials_raise_credentials_error(sandbox: SandboxProcess) -> None:
    gateway = DingTalkGateway(_settings(sandbox.port, app_secret="not-the-secret"))
    sandbox.admin("POST", "stats/reset")
    with pytest.raises(CredentialsError) as caught:
        gateway.check()
    assert caught.value.code == "invalidClientIdOrSecret" and caught.value.http_status == 400
    assert "not-the-secret" not in str(caught.value)
    assert sandbox.admin("GET", "stats").json()["apis"][TOKEN_API]["accepted"] == 1


class _QuotaStub(BaseHTTPRequestHandler):
    """DingTalk answering an org that has used up its month: the sandbox has no switch for this."""

    REPLIES: ClassVar[dict[str, tuple[int, dict]]] = {
        TOKEN_API: (200, {"accessToken": "stub-token", "expireIn": 7200}),
        "/topapi/message/corpconversation/asyncsend_v2": (
            200,
            {"errcode": 90020, "errmsg": "api调用量超过限制", "request_id": "req-oapi"},
        ),
        BATCH_SEND: (
            403,
            {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg", "message": "调用量超限", "requestid": "req-api"},
        ),
    }

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        self.server.hits.append(path)  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, reply = self.REPLIES[path]
        data = json.dumps(reply, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_quota_exhausted_is_never_retried() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _QuotaStub)
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    settings = load_settings({"DINGTALK_OAPI_BASE": base, "DINGTALK_API_BASE": base}, read_dotenv=False).dingtalk
    gateway = DingTalkGateway(settings)
    try:
        with pytest.raises(QuotaExceededError) as oapi_caught:
            gateway.oapi("/topapi/message/corpconversation/asyncsend_v2", {"agent_id": 1, "msg": {}})
        assert (oapi_caught.value.code, oapi_caught.value.request_id) == ("90020", "req-oapi")
        with pytest.raises(QuotaExceededError) as api_caught:
            gateway.api("robot_1_0", "batch_send_oto", _text_to(settings, "u1"))
        assert api_caught.value.code == "Forbidden.AccessDenied.ApiCountLimitForOrg"
        assert (api_caught.value.http_status, api_caught.value.request_id) == (403, "req-api")
        assert server.hits == [TOKEN_API, "/topapi/message/corpconversation/asyncsend_v2", BATCH_SEND]  # type: ignore[attr-defined]
    finally:
        gateway.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("reply", "expected", "code"),
    [
        ({"errcode": 90018, "errmsg": "接口调用超过限流"}, ThrottledError, "90018"),
        ({"errcode": 90002, "errmsg": "服务器当前调用次数过多"}, ThrottledError, "90002"),
        ({"errcode": -1, "errmsg": "系统繁忙"}, TransientError, "-1"),
        (
            {"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token", "errmsg": "x"},
            TokenError,
            "88/40014",
        ),
        ({"errcode": 42001, "errmsg": "access_token已过期"}, TokenError, "42001"),
        ({"errcode": 40001, "errmsg": "secret错误"}, TokenError, "40001"),
        ({"errcode": 90020, "errmsg": "超过调用量"}, QuotaExceededError, "90020"),
        ({"errcode": 40096, "errmsg": "不合法的appKey或appSecret"}, CredentialsError, "40096"),
        ({"errcode": 60011, "errmsg": "没有调用该接口的权限"}, DingTalkError, "60011"),
    ],
)
def test_oapi_codes_map_to_types(reply: dict, expected: type, code: str) -> None:
    error = oapi_error(reply, api="/topapi/x", http_status=200)
    assert type(error) is expected and error.code == code


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", ThrottledError),
        (403, "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi", ThrottledError),
        (403, "Forbidden.AccessDenied.QpsLimitForApi", ThrottledError),
        (400, "InvalidAuthentication", TokenError),
        (403, "Forbidden.AccessDenied.ApiCountLimitForOrg", QuotaExceededError),
        (400, "invalidClientIdOrSecret", CredentialsError),
        (503, "operationTimeout", TransientError),
        (504, "service.timeout", TransientError),
        (403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", DingTalkError),
        (400, "invalidParameter.userIds.overMax", DingTalkError),
    ],
)
def test_new_api_codes_map_to_types(status: int, code: str, expected: type) -> None:
    error = api_error(status, code, "…", api="/v1.0/x", request_id="r1")
    assert type(error) is expected and (error.code, error.http_status) == (code, status)


def test_errors_survive_pickling() -> None:  # RQ and multiprocessing move them between processes
    error = pickle.loads(
        pickle.dumps(ThrottledError("90018", "限流", api="/topapi/x", request_id="r", http_status=200))
    )
    assert type(error) is ThrottledError
    assert (error.code, error.message, error.api, error.request_id, error.http_status) == (
        "90018",
        "限流",
        "/topapi/x",
        "r",
        200,
    )


# -- faults and throttling ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty_sandbox() -> Iterator[SandboxProcess]:
    """A bad day at DingTalk: 30% of calls answer 5xx / busy or hang for 2 s (past our 1 s timeout)."""
    args = ("--scale", "small", "--seed", "7", "--qps", "20", "--fault-rate", "0.3", "--fault-delay", "2")
    with SandboxProcess(*args) as process:
        yield process


def test_injected_faults_become_successful_calls(faulty_sandbox: SandboxProcess) -> None:
    settings = _settings(faulty_sandbox.port)
    # 10 attempts: with 30% faults, 6 would fail one call in ~1,400 (0.3**6); a run of 100 would flake.
    gateway = DingTalkGateway(settings, max_attempts=10, timeout=1.0)
    userid = faulty_sandbox.admin("GET", "truth").json()["users"][0]["userid"]
    faulty_sandbox.admin("POST", "stats/reset")

    def call(i: int) -> bool:
        if i % 2:
            return gateway.oapi(LIST_SUB, {"dept_id": 1})["errcode"] == 0
        return bool(gateway.api("robot_1_0", "batch_send_oto", _text_to(settings, userid)).process_query_key)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(100)))
    gateway.close()
    assert results == [True] * 100
    apis = faulty_sandbox.admin("GET", "stats").json()["apis"]
    assert apis[LIST_SUB]["accepted"] == 50 and apis[BATCH_SEND]["accepted"] == 50
    assert apis[LIST_SUB]["faults"] > 0 and apis[BATCH_SEND]["faults"] > 0


def test_throttling_becomes_successful_calls(faulty_sandbox: SandboxProcess) -> None:
    # Our limiter set far above the sandbox's 20 QPS, as if another app shared the budget: DingTalk throttles.
    gateway = DingTalkGateway(_settings(faulty_sandbox.port, qps=500), max_attempts=10, timeout=1.0)
    gateway.access_token()
    faulty_sandbox.admin("POST", "stats/reset")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: gateway.oapi("/topapi/v2/department/listsubid", {"dept_id": 1}), range(80)))
    gateway.close()
    assert all(reply["errcode"] == 0 for reply in replies)
    seen = faulty_sandbox.admin("GET", "stats").json()["apis"]["/topapi/v2/department/listsubid"]
    assert seen["throttled"] > 0 and seen["accepted"] == 80


def test_oapi_goes_through_the_proxy_the_environment_names_unless_no_proxy_exempts_the_host(monkeypatch) -> None:
    """Read once when the gateway is built, as `requests` read it on every call."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    proxied = _pool("https://oapi.dingtalk.com", 5.0)
    assert isinstance(proxied, urllib3.ProxyManager) and proxied.proxy.host == "proxy.example"
    assert not isinstance(_pool("http://127.0.0.1:8790", 5.0), urllib3.ProxyManager)
