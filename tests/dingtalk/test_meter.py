"""The quota meter on SQLite and PostgreSQL, and the gateway counting only successful metered calls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alibabacloud_dingtalk.robot_1_0 import models as robot_models

from config.settings import load_settings
from workbench.db import Model
from workbench.dingtalk.errors import DingTalkError
from workbench.dingtalk.gateway import DingTalkGateway
from workbench.dingtalk.meter import QuotaMeter, QuotaUsage, billing_month, metered_kind

SCHEMA = "test_quota_meter"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = sa.create_engine(
            f"sqlite:///{tmp_path / 'meter.db'}", connect_args={"timeout": 30, "check_same_thread": False}
        )
    else:  # a schema of our own, so the migrations other tests run in `public` are left alone
        url = request.getfixturevalue("postgres_url")
        with sa.create_engine(url).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"))
        engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={SCHEMA}"})
    Model.metadata.create_all(engine, tables=[QuotaUsage.__table__])
    yield engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    engine.dispose()


@pytest.fixture
def meter(engine: sa.Engine) -> QuotaMeter:
    return QuotaMeter(engine, api_quota=5000, message_quota=3000)


def test_usage_shape_before_any_call(meter: QuotaMeter) -> None:
    assert meter.usage() == {
        "month": billing_month(),
        "api": {"used": 0, "quota": 5000, "remaining": 5000},
        "message": {"used": 0, "quota": 3000, "remaining": 3000},
    }


def test_records_add_up_per_kind_and_month(meter: QuotaMeter) -> None:
    meter.record("api")
    meter.record("api", 3)
    meter.record("message")
    usage = meter.usage()
    assert usage["api"] == {"used": 4, "quota": 5000, "remaining": 4996}
    assert usage["message"] == {"used": 1, "quota": 3000, "remaining": 2999}
    assert meter.usage("2020-01")["api"]["used"] == 0


def test_remaining_never_negative(engine: sa.Engine) -> None:
    meter = QuotaMeter(engine, api_quota=2, message_quota=1)
    meter.record("api", 5)
    assert meter.usage()["api"] == {"used": 5, "quota": 2, "remaining": 0}


def test_concurrent_records_are_not_lost(meter: QuotaMeter) -> None:
    def work() -> None:
        for _ in range(25):
            meter.record("api")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert meter.usage()["api"]["used"] == 200


def test_unknown_kind_is_refused(meter: QuotaMeter) -> None:
    with pytest.raises(ValueError):
        meter.record("calls")  # type: ignore[arg-type]


def test_billing_month_is_china_time() -> None:
    assert billing_month(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)) == "2026-11"
    assert billing_month(datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) == "2026-12"  # 00:00 on 1 Dec in Beijing


@pytest.mark.parametrize(
    ("api", "kind"),
    [
        ("/v1.0/robot/oToMessages/batchSend", "api"),
        ("/v1.0/robot/groupMessages/send", "api"),
        ("/robot/send", "message"),
        ("/topapi/message/corpconversation/asyncsend_v2", "api"),
        ("/v1.0/card/instances/createAndDeliver", "api"),
        ("/v1.0/card/instances", "api"),
        ("/v1.0/workflow/processInstances", "api"),
        ("/topapi/processinstance/get", "api"),
        ("/v1.0/oauth2/accessToken", None),
        ("/gettoken", None),
        ("/topapi/v2/department/listsub", None),
        ("/topapi/v2/user/list", None),
        ("/topapi/v2/user/getuserinfo", None),
        ("/topapi/user/listid", None),
        ("/v1.0/contact/users/{union_id}", None),
    ],
)
def test_which_calls_are_metered(api: str, kind: str | None) -> None:
    assert metered_kind(api) == kind


def test_gateway_counts_successful_metered_calls_only(sandbox, meter: QuotaMeter) -> None:
    settings = load_settings({"SANDBOX_PORT": str(sandbox.port)}, read_dotenv=False).dingtalk
    gateway = DingTalkGateway(settings, meter=meter)
    userid = sandbox.admin("GET", "truth").json()["users"][0]["userid"]
    try:
        gateway.oapi("/topapi/v2/user/list", {"dept_id": 1, "cursor": 0, "size": 5})  # contacts: free
        assert meter.usage()["api"]["used"] == 0

        send = robot_models.BatchSendOTORequest(
            robot_code=settings.app_key,
            user_ids=[userid],
            msg_key="sampleText",
            msg_param=json.dumps({"content": "hi"}),
        )
        gateway.api("robot_1_0", "batch_send_oto", send)
        gateway.oapi(
            "/topapi/message/corpconversation/asyncsend_v2",
            {
                "agent_id": settings.agent_id,
                "userid_list": userid,
                "msg": {"msgtype": "text", "text": {"content": "hi"}},
            },
        )
        assert meter.usage()["api"]["used"] == 2

        with pytest.raises(DingTalkError):  # a failed call is not counted, by DingTalk or by us
            gateway.api("robot_1_0", "batch_send_oto", _bad_robot(send))
        assert meter.usage()["api"]["used"] == 2

        robot = sandbox.admin("POST", "robots", json={"title": "测试群机器人"}).json()
        gateway.webhook(robot["access_token"], {"msgtype": "text", "text": {"content": "hi"}}, secret=robot["secret"])
        usage = meter.usage()
        assert usage["api"]["used"] == 2 and usage["message"]["used"] == 1
    finally:
        gateway.close()


def _bad_robot(send: robot_models.BatchSendOTORequest) -> robot_models.BatchSendOTORequest:
    return robot_models.BatchSendOTORequest(
        robot_code="no-such-robot", user_ids=send.user_ids, msg_key=send.msg_key, msg_param=send.msg_param
    )
