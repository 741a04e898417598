"""Free-login, custom-robot webhook, enterprise robot, work notifications and scene groups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api


def _users(truth: dict[str, Any], n: int) -> list[str]:
    return [u["userid"] for u in truth["users"][:n]]


def test_free_login_code_is_single_use(sb: Api, truth: dict[str, Any]) -> None:
    user = truth["users"][3]
    code = sb.admin("POST", "auth-code", {"userid": user["userid"]}).json()["code"]
    info = sb.oapi("/topapi/v2/user/getuserinfo", {"code": code})
    assert info["errcode"] == 0
    assert info["result"]["userid"] == user["userid"] and info["result"]["unionid"] == user["unionid"]
    assert set(info["result"]) >= {"name", "device_id", "sys", "sys_level", "associated_unionid"}
    again = sb.oapi("/topapi/v2/user/getuserinfo", {"code": code})
    assert again["errcode"] == 40078 and again["errmsg"] == "不存在的临时授权码"
    assert sb.oapi("/topapi/v2/user/getuserinfo", {"code": "made-up"})["errcode"] == 40078
    bad = sb.admin("POST", "auth-code", {"userid": "no-such-user"})
    assert bad.status_code == 404 and bad.json()["error"]["field"] == "userid"


def test_browser_oauth_route(sb: Api, truth: dict[str, Any]) -> None:
    user = truth["users"][4]
    code = sb.admin("POST", "auth-code", {"userid": user["userid"], "kind": "oauth"}).json()["code"]
    body = {"clientId": sb.app_key, "clientSecret": sb.app_secret, "code": code, "grantType": "authorization_code"}
    tokens = sb.session.post(f"{sb.url}/v1.0/oauth2/userAccessToken", json=body).json()
    assert tokens["corpId"] == sb.corp_id and tokens["expireIn"] == 7200
    me = sb.session.get(
        f"{sb.url}/v1.0/contact/users/me", headers={"x-acs-dingtalk-access-token": tokens["accessToken"]}
    )
    assert me.json()["unionId"] == user["unionid"] and me.json()["nick"] == user["name"]
    assert set(me.json()) == {"nick", "avatarUrl", "mobile", "stateCode", "openId", "unionId", "email"}
    reused = sb.session.post(f"{sb.url}/v1.0/oauth2/userAccessToken", json=body)
    assert reused.status_code == 400
    refresh = {**body, "grantType": "refresh_token", "refreshToken": tokens["refreshToken"], "code": None}
    assert sb.session.post(f"{sb.url}/v1.0/oauth2/userAccessToken", json=refresh).json()["accessToken"]


def _signed(secret: str, ts: int | None = None) -> dict[str, str]:
    ts = ts or int(time.time() * 1000)
    digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    return {"timestamp": str(ts), "sign": base64.b64encode(digest).decode()}


def test_custom_robot_webhook_sign_and_rate(sb: Api) -> None:
    robot = sb.admin("POST", "robots", {"title": "告警群机器人"}).json()
    assert robot["secret"].startswith("SEC")
    send = f"{sb.url}/robot/send"

    def post(params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return sb.session.post(send, params={"access_token": robot["access_token"], **params}, json=body).json()

    text = {"msgtype": "text", "text": {"content": "院感预警"}}
    assert post({}, text)["errcode"] == 310000
    assert post(_signed("SECwrong"), text)["errcode"] == 310000
    assert post(_signed(robot["secret"], int(time.time() * 1000) - 2 * 3600 * 1000), text)["errcode"] == 310000
    unknown = sb.session.post(send, params={"access_token": "nope", **_signed(robot["secret"])}, json=text).json()
    assert unknown["errcode"] == 300005
    # URL-encoded signature in a hand-built query string, as the reference client does
    signed = _signed(robot["secret"])
    sign = urllib.parse.quote_plus(signed["sign"])
    query = f"access_token={robot['access_token']}&timestamp={signed['timestamp']}&sign={sign}"
    assert sb.session.post(f"{send}?{query}", json={**text, "msgUuid": "u-1"}).json()["errcode"] == 0
    assert post(_signed(robot["secret"]), {**text, "msgUuid": "u-1"})["errcode"] == 0  # de-duplicated
    for i in range(19):
        assert (
            post(_signed(robot["secret"]), {"msgtype": "markdown", "markdown": {"title": "t", "text": str(i)}})[
                "errcode"
            ]
            == 0
        )
    assert post(_signed(robot["secret"]), text)["errcode"] == 410100
    assert post(_signed(robot["secret"]), text)["errcode"] == 410100  # banned for 10 minutes
    stored = sb.admin("GET", "messages", params={"conversation": robot["open_conversation_id"]}).json()["messages"]
    assert len(stored) == 20 and stored[0]["content"] == {"text": {"content": "院感预警"}}


def test_enterprise_robot_batch_send_limits(sb: Api, truth: dict[str, Any]) -> None:
    users = _users(truth, 21)
    body = {"robotCode": sb.app_key, "msgKey": "sampleText", "msgParam": json.dumps({"content": "随访提醒"})}
    over = sb.api("POST", "/v1.0/robot/oToMessages/batchSend", {**body, "userIds": users})
    assert over.status_code == 400 and over.json()["code"] == "invalidParameter.userIds.overMax"
    wrong = sb.api("POST", "/v1.0/robot/oToMessages/batchSend", {**body, "robotCode": "other", "userIds": users[:1]})
    assert wrong.status_code == 400 and wrong.json()["code"].startswith("invalidParameter.robotCode")
    badkey = sb.api("POST", "/v1.0/robot/oToMessages/batchSend", {**body, "msgKey": "nope", "userIds": users[:1]})
    assert badkey.json()["code"] == "invalidParameter.msgKey.invalid"
    ok = sb.api(
        "POST", "/v1.0/robot/oToMessages/batchSend", {**body, "userIds": [*users[:2], "ghost"], "msgUuid": "m1"}
    )
    assert ok.status_code == 200 and ok.json()["invalidStaffIdList"] == ["ghost"] and ok.json()["processQueryKey"]
    again = sb.api("POST", "/v1.0/robot/oToMessages/batchSend", {**body, "userIds": users[:2], "msgUuid": "m1"})
    assert again.json()["processQueryKey"] == ok.json()["processQueryKey"]
    mine = sb.admin("GET", "messages", params={"userid": users[1], "kind": "robot_oto"}).json()["messages"]
    assert [m["content"] for m in mine] == [{"content": "随访提醒"}]


def test_enterprise_robot_with_the_real_sdk(sb: Api, truth: dict[str, Any]) -> None:
    from alibabacloud_dingtalk.robot_1_0 import models as robot_models
    from alibabacloud_dingtalk.robot_1_0.client import Client as RobotClient
    from alibabacloud_tea_openapi import models as open_api_models
    from alibabacloud_tea_util import models as util_models
    from Tea.exceptions import TeaException

    client = RobotClient(
        open_api_models.Config(protocol="http", region_id="central", endpoint=sb.url.removeprefix("http://"))
    )
    headers = robot_models.BatchSendOTOHeaders(x_acs_dingtalk_access_token=sb.token)
    req = robot_models.BatchSendOTORequest(
        robot_code=sb.app_key,
        user_ids=_users(truth, 1),
        msg_key="sampleMarkdown",
        msg_param=json.dumps({"title": "转诊", "text": "**患者已到达**"}),
    )
    resp = client.batch_send_otowith_options(req, headers, util_models.RuntimeOptions())
    assert resp.status_code == 200 and resp.body.process_query_key
    req.user_ids = _users(truth, 21)
    with pytest.raises(TeaException) as err:
        client.batch_send_otowith_options(req, headers, util_models.RuntimeOptions())
    assert err.value.code == "invalidParameter.userIds.overMax"


def test_work_notification_daily_dedupe(sb: Api, truth: dict[str, Any]) -> None:
    users = _users(truth, 3)
    msg = {"msgtype": "text", "text": {"content": f"今日质控通报 {time.time()}"}}
    body = {"agent_id": sb.agent_id, "userid_list": ",".join([*users, "ghost"]), "msg": msg}
    first = sb.oapi("/topapi/message/corpconversation/asyncsend_v2", body)
    assert first["errcode"] == 0 and first["task_id"]
    second = sb.oapi("/topapi/message/corpconversation/asyncsend_v2", body)
    assert second["errcode"] == 0  # DingTalk accepts it and drops it silently
    res1 = sb.oapi(
        "/topapi/message/corpconversation/getsendresult", {"agent_id": sb.agent_id, "task_id": first["task_id"]}
    )
    res2 = sb.oapi(
        "/topapi/message/corpconversation/getsendresult", {"agent_id": sb.agent_id, "task_id": second["task_id"]}
    )
    assert (
        res1["send_result"]["invalid_user_id_list"] == ["ghost"] and res1["send_result"]["forbidden_user_id_list"] == []
    )
    assert sorted(res2["send_result"]["forbidden_user_id_list"]) == sorted(users)
    assert {f["code"] for f in res2["send_result"]["forbidden_list"]} == {"143106"}
    assert len(sb.admin("GET", "messages", params={"userid": users[0], "kind": "work_notice"}).json()["messages"]) >= 1
    wrong_agent = sb.oapi("/topapi/message/corpconversation/asyncsend_v2", {**body, "agent_id": "1"})
    assert wrong_agent["errcode"] != 0
    too_many = sb.oapi(
        "/topapi/message/corpconversation/asyncsend_v2", {**body, "userid_list": ",".join(f"u{i}" for i in range(101))}
    )
    assert too_many["errcode"] == 40035
    big = {"msgtype": "text", "text": {"content": "长" * 1000}}
    assert sb.oapi("/topapi/message/corpconversation/asyncsend_v2", {**body, "msg": big})["errcode"] == 40035


def test_work_notification_expands_departments(sb: Api, truth: dict[str, Any]) -> None:
    parents = {d["dept_id"]: d.get("parent_id") for d in truth["departments"]}
    dept = next(
        d for d in truth["departments"] if d["dept_id"] != 1 and any(p == d["dept_id"] for p in parents.values())
    )
    subtree = {dept["dept_id"]}
    changed = True
    while changed:
        before = len(subtree)
        subtree |= {d for d, p in parents.items() if p in subtree}
        changed = len(subtree) != before
    expected = {u["userid"] for u in truth["users"] if set(u["dept_id_list"]) & subtree}
    msg = {"msgtype": "markdown", "markdown": {"title": "通知", "text": f"部门通知 {time.time()}"}}
    sent = sb.oapi(
        "/topapi/message/corpconversation/asyncsend_v2",
        {"agent_id": sb.agent_id, "dept_id_list": str(dept["dept_id"]), "msg": msg},
    )
    result = sb.oapi(
        "/topapi/message/corpconversation/getsendresult", {"agent_id": sb.agent_id, "task_id": sent["task_id"]}
    )
    assert set(result["send_result"]["unread_user_id_list"]) == expected


def test_scene_group_and_group_message(sb: Api, truth: dict[str, Any]) -> None:
    owner, *members = _users(truth, 4)
    body = {
        "title": "医共体质控群",
        "template_id": "tpl-1",
        "owner_user_id": owner,
        "user_ids": ",".join(members),
        "uuid": "g-1",
    }
    created = sb.oapi("/topapi/im/chat/scenegroup/create", body)["result"]
    assert created["open_conversation_id"].startswith("cid") and created["chat_id"]
    assert sb.oapi("/topapi/im/chat/scenegroup/create", body)["result"] == created  # idempotent by uuid
    cid = created["open_conversation_id"]
    assert (
        sb.oapi("/topapi/im/chat/scenegroup/member/delete", {"open_conversation_id": cid, "user_ids": members[0]})[
            "errcode"
        ]
        == 0
    )
    info = sb.oapi("/topapi/im/chat/scenegroup/get", {"open_conversation_id": cid})["result"]
    assert info["member_amount"] == 3 and info["owner_staff_id"] == owner
    send = {
        "robotCode": sb.app_key,
        "openConversationId": cid,
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "hi"}),
    }
    assert sb.api("POST", "/v1.0/robot/groupMessages/send", send).json()["processQueryKey"]
    big = {**send, "msgParam": json.dumps({"content": "x" * 15001})}
    assert sb.api("POST", "/v1.0/robot/groupMessages/send", big).json()["code"] == "invalidParameter.msgParam.tooLong"
    unknown = sb.api("POST", "/v1.0/robot/groupMessages/send", {**send, "openConversationId": "cidnope"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid.openConversationId"
    assert len(sb.admin("GET", "messages", params={"conversation": cid}).json()["messages"]) == 1
    page = sb.session.get(f"{sb.url}/_sandbox/", params={"conversation": cid}).text
    assert "医共体质控群" in page and "hi" in page
