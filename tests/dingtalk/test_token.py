"""The app token: one fetch shared by threads and processes (through Redis), refreshed ahead of expiry and after
DingTalk rejects it. The sandbox's statistics count the token calls that really happened."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_lib
from alibabacloud_dingtalk.robot_1_0 import models as robot_models

from config.settings import load_settings
from tests.support.sandbox import SandboxProcess
from workbench.dingtalk.gateway import DingTalkGateway
from workbench.dingtalk.token import AppTokenProvider

TOKEN_API = "/v1.0/oauth2/accessToken"
LIST_SUB = "/topapi/v2/department/listsub"

pytestmark = pytest.mark.redis


def _gateway(sandbox: SandboxProcess, redis: redis_lib.Redis | None) -> DingTalkGateway:
    return DingTalkGateway(load_settings({"SANDBOX_PORT": str(sandbox.port)}, read_dotenv=False).dingtalk, redis=redis)


def _token_calls(sandbox: SandboxProcess) -> int:
    return sandbox.admin("GET", "stats").json()["apis"].get(TOKEN_API, {}).get("accepted", 0)


@pytest.fixture(scope="module")
def token_sandbox() -> Iterator[SandboxProcess]:
    """A sandbox of our own: these tests revoke its tokens and count its token calls."""
    with SandboxProcess("--scale", "small", "--seed", "7") as process:
        yield process


def test_second_gateway_uses_the_cached_token(token_sandbox: SandboxProcess, redis_client) -> None:
    first = _gateway(token_sandbox, redis_client)
    token = first.access_token()
    token_sandbox.admin("POST", "stats/reset")
    second = _gateway(token_sandbox, redis_client)  # as another process would: nothing cached in memory
    assert second.oapi(LIST_SUB, {"dept_id": 1})["errcode"] == 0
    assert second.access_token() == token
    assert _token_calls(token_sandbox) == 0


def test_revoked_token_is_refreshed_transparently(token_sandbox: SandboxProcess, redis_client, caplog) -> None:
    gateway = _gateway(token_sandbox, redis_client)
    userid = token_sandbox.admin("GET", "truth").json()["users"][0]["userid"]
    send = robot_models.BatchSendOTORequest(
        robot_code=load_settings({}, read_dotenv=False).dingtalk.app_key,
        user_ids=[userid],
        msg_key="sampleText",
        msg_param=json.dumps({"content": "hi"}),
    )
    gateway.oapi(LIST_SUB, {"dept_id": 1})
    token_sandbox.admin("POST", "stats/reset")

    token_sandbox.admin("POST", "tokens/revoke")  # oapi answers 42001 (expired)
    assert gateway.oapi(LIST_SUB, {"dept_id": 1})["errcode"] == 0
    token_sandbox.admin("POST", "tokens/revoke")  # the new API answers HTTP 400 InvalidAuthentication
    assert gateway.api("robot_1_0", "batch_send_oto", send).process_query_key

    assert _token_calls(token_sandbox) == 2
    rejected = [r for r in caplog.records if "token rejected" in r.getMessage()]
    assert [r.status for r in rejected] == ["42001", "InvalidAuthentication"]


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
def test_cold_cache_many_threads_one_token_call(token_sandbox: SandboxProcess, redis_client, shared: bool) -> None:
    gateway = _gateway(token_sandbox, redis_client if shared else None)
    token_sandbox.admin("POST", "stats/reset")
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda _: gateway.oapi(LIST_SUB, {"dept_id": 1}), range(16)))
    assert all(reply["errcode"] == 0 for reply in replies)
    assert _token_calls(token_sandbox) == 1


def _cold_start(port: int, redis_url: str, barrier, results) -> None:
    settings = load_settings({"SANDBOX_PORT": str(port)}, read_dotenv=False).dingtalk
    gateway = DingTalkGateway(settings, redis=redis_lib.Redis.from_url(redis_url))
    barrier.wait(timeout=60)  # both processes ask at once, with a cold cache
    with ThreadPoolExecutor(8) as pool:
        results.put(sorted(set(pool.map(lambda _: gateway.access_token(), range(8)))))


def test_cold_cache_two_processes_one_token_call(token_sandbox: SandboxProcess, redis_client, redis_url: str) -> None:
    token_sandbox.admin("POST", "stats/reset")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    processes = [ctx.Process(target=_cold_start, args=(token_sandbox.port, redis_url, barrier, results)) for _ in "ab"]
    for process in processes:
        process.start()
    tokens = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert tokens[0] == tokens[1] and len(tokens[0]) == 1
    assert _token_calls(token_sandbox) == 1


def test_token_refreshed_ahead_of_expiry(redis_client, caplog) -> None:
    with SandboxProcess("--scale", "small", "--seed", "7", "--token-ttl", "5") as sandbox:
        gateway = _gateway(sandbox, redis_client)
        deadline = time.monotonic() + 8  # well past the first token's 5 s lifetime
        while time.monotonic() < deadline:
            assert gateway.oapi(LIST_SUB, {"dept_id": 1})["errcode"] == 0
            time.sleep(0.2)
        assert _token_calls(sandbox) >= 2  # refreshed at least once...
    rejected = [(r.api, r.status) for r in caplog.records if "token rejected" in r.getMessage()]
    assert rejected == []  # ...before DingTalk refused it


def test_late_invalidation_keeps_a_fresh_token(redis_client) -> None:
    issued = iter(["tok-1", "tok-2", "tok-3"])
    fetched: list[str] = []

    def fetch() -> tuple[str, float]:
        fetched.append(next(issued))
        return fetched[-1], 7200.0

    a = AppTokenProvider(fetch, app="k", redis=redis_client)
    b = AppTokenProvider(fetch, app="k", redis=redis_client)
    assert a.get() == b.get() == "tok-1"
    a.invalidate("tok-1")  # DingTalk rejected tok-1 in process a
    assert a.get() == "tok-2"
    b.invalidate("tok-1")  # process b learns of it later: tok-2 must survive
    assert b.get() == "tok-2"
    assert AppTokenProvider(fetch, app="k", redis=redis_client).get() == "tok-2"
    assert fetched == ["tok-1", "tok-2"]


def test_no_redis_keeps_the_token_in_memory(token_sandbox: SandboxProcess) -> None:
    gateway = _gateway(token_sandbox, None)
    token_sandbox.admin("POST", "stats/reset")
    assert gateway.access_token() == gateway.access_token()
    assert _token_calls(token_sandbox) == 1


def test_logs_never_show_the_token(token_sandbox: SandboxProcess, redis_client, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="workbench.dingtalk")
    gateway = _gateway(token_sandbox, redis_client)
    tokens = [gateway.access_token()]
    token_sandbox.admin("POST", "tokens/revoke")
    gateway.oapi(LIST_SUB, {"dept_id": 1})  # the revoked token is rejected and replaced
    tokens.append(gateway.access_token())
    records = [r for r in caplog.records if r.name.startswith("workbench.dingtalk")]
    assert records and tokens[0] != tokens[1]
    assert not [r for r in records for t in tokens if t in r.getMessage() or t in str(r.__dict__)]
