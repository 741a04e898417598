"""Cards: create/deliver, update in place, HTTP-callback clicks to a stand-in workbench, the real SDK."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api, Receiver


def _card(sb: Api, userid: str, **extra: Any) -> dict[str, Any]:
    body = {
        "cardTemplateId": "referral.schema",
        "outTrackId": f"ref-{uuid.uuid4().hex[:12]}",
        "cardData": {"cardParamMap": {"title": "转诊申请", "status": "待接收"}},
        "openSpaceId": f"dtv1.card//IM_ROBOT.{userid}",
        "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": sb.app_key},
        "callbackType": "HTTP",
        "callbackRouteKey": "workbench-cards",
        **extra,
    }
    return body


def test_create_validates_like_dingtalk(sb: Api, truth: dict[str, Any]) -> None:
    userid = truth["users"][0]["userid"]
    body = _card(sb, userid)
    created = sb.api("POST", "/v1.0/card/instances/createAndDeliver", body)
    assert created.status_code == 200, created.text
    (result,) = created.json()["result"]["deliverResults"]
    assert result["success"] and result["spaceType"] == "IM_ROBOT" and result["carrierId"]
    dup = sb.api("POST", "/v1.0/card/instances/createAndDeliver", body)
    assert dup.status_code == 400 and dup.json()["code"] == "param.cardAlreadyExist"
    cases = {
        "outTrackId.outOfLimit": {"outTrackId": "x" * 65},
        "param.openSpaceIdInvalid": {"openSpaceId": "IM_ROBOT.someone"},
        "param.openDeliverModelEmpty": {"imRobotOpenDeliverModel": None},
        "param.cardParamMapInvalid": {"cardData": {"cardParamMap": {"count": 3}}},
        "param.callbackRouteKeyEmpty": {"callbackRouteKey": None},
        "param.outTrackIdEmpty": {"outTrackId": ""},
    }
    for code, change in cases.items():
        bad = {**_card(sb, userid), **change}
        resp = sb.api("POST", "/v1.0/card/instances/createAndDeliver", bad)
        assert resp.status_code == 400 and resp.json()["code"] == code, (code, resp.text)
    group_card = _card(sb, userid, openSpaceId="dtv1.card//IM_GROUP.cidUnknown==;IM_ROBOT." + userid)
    group_card["imGroupOpenDeliverModel"] = {"robotCode": sb.app_key}
    results = sb.api("POST", "/v1.0/card/instances/createAndDeliver", group_card).json()["result"]["deliverResults"]
    assert [r["success"] for r in results] == [False, True]


def test_update_overwrites_or_merges(sb: Api, truth: dict[str, Any]) -> None:
    userid = truth["users"][1]["userid"]
    body = _card(sb, userid)
    sb.api("POST", "/v1.0/card/instances/createAndDeliver", body)
    out = body["outTrackId"]
    merge = {"outTrackId": out, "cardData": {"cardParamMap": {"status": "已接收"}}}
    merge["cardUpdateOptions"] = {"updateCardDataByKey": True}
    assert sb.api("PUT", "/v1.0/card/instances", merge).json() == {"success": True, "result": True}
    card = sb.admin("GET", "messages", params={"userid": userid, "kind": "card"}).json()["messages"][-1]["card"]
    assert card["cardData"]["cardParamMap"] == {"title": "转诊申请", "status": "已接收"}
    overwrite = {"outTrackId": out, "cardData": {"cardParamMap": {"status": "已完成"}}}
    sb.api("PUT", "/v1.0/card/instances", overwrite)
    card = sb.admin("GET", "messages", params={"userid": userid, "kind": "card"}).json()["messages"][-1]["card"]
    assert card["cardData"]["cardParamMap"] == {"status": "已完成"}
    missing = sb.api("PUT", "/v1.0/card/instances", {**overwrite, "outTrackId": "nope"})
    assert missing.status_code == 400 and missing.json()["code"] == "param.cardNotExist"
    empty = sb.api("PUT", "/v1.0/card/instances", {"outTrackId": out})
    assert empty.json()["code"] == "param.cardDataAndPrivateDataBothEmpty"


def test_click_over_http_callback(sb: Api, fresh_receiver: Receiver, truth: dict[str, Any]) -> None:
    userid = truth["users"][2]["userid"]
    register = {
        "callbackRouteKey": "workbench-cards",
        "callbackUrl": f"{fresh_receiver.url}/card",
        "apiSecret": "card-secret",
        "forceUpdate": True,
    }
    assert sb.api("POST", "/v1.0/card/callbacks/register", register).json()["success"] is True
    body = _card(sb, userid)
    sb.api("POST", "/v1.0/card/instances/createAndDeliver", body)
    fresh_receiver.card_reply = {
        "cardData": {"cardParamMap": {"status": "已接收"}},
        "userPrivateData": {"cardParamMap": {"mine": "我接收的"}},
        "cardUpdateOptions": {"updateCardDataByKey": True, "updatePrivateDataByKey": True},
    }
    click = {"userid": userid, "action_id": "accept", "params": {"referralId": "R1"}}
    resp = sb.admin("POST", f"cards/{body['outTrackId']}/click", click)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["card"]["cardData"]["cardParamMap"] == {"title": "转诊申请", "status": "已接收"}
    assert out["card"]["privateData"][userid]["cardParamMap"] == {"mine": "我接收的"}
    sent = fresh_receiver.cards[-1]
    payload = sent["body"]
    assert payload["type"] == "actionCallback" and payload["outTrackId"] == body["outTrackId"]
    assert payload["userId"] == userid and payload["corpId"] == sb.corp_id
    assert json.loads(payload["content"]) == {
        "cardPrivateData": {"actionIds": ["accept"], "params": {"referralId": "R1"}}
    }
    ts = sent["headers"]["x-ddpaas-signature-timestamp"]
    expected = base64.b64encode(hmac.new(b"card-secret", ts.encode(), hashlib.sha256).digest()).decode()
    assert sent["headers"]["x-ddpaas-signature"] == expected
    page = sb.session.get(f"{sb.url}/_sandbox/", params={"userid": userid}).text
    assert "已接收" in page and "我接收的" in page


def test_click_without_a_channel_is_a_clear_409(sb: Api, truth: dict[str, Any]) -> None:
    userid = truth["users"][2]["userid"]
    stream_card = _card(sb, userid, callbackType="STREAM", callbackRouteKey=None)
    sb.api("POST", "/v1.0/card/instances/createAndDeliver", stream_card)
    resp = sb.admin("POST", f"cards/{stream_card['outTrackId']}/click", {"userid": userid, "action_id": "a"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "no_channel"
    http_card = _card(sb, userid, callbackRouteKey="never-registered")
    sb.api("POST", "/v1.0/card/instances/createAndDeliver", http_card)
    resp = sb.admin("POST", f"cards/{http_card['outTrackId']}/click", {"userid": userid, "action_id": "a"})
    assert resp.status_code == 409
    assert sb.admin("POST", "cards/nope/click", {"userid": userid, "action_id": "a"}).status_code == 404
    assert sb.admin("POST", f"cards/{http_card['outTrackId']}/click", {"userid": userid}).status_code == 400


def test_cards_with_the_real_sdk(sb: Api, truth: dict[str, Any]) -> None:
    from alibabacloud_dingtalk.card_1_0 import models as card_models
    from alibabacloud_dingtalk.card_1_0.client import Client as CardClient
    from alibabacloud_tea_openapi import models as open_api_models
    from alibabacloud_tea_util import models as util_models

    userid = truth["users"][5]["userid"]
    client = CardClient(open_api_models.Config(protocol="http", region_id="central", endpoint=sb.url[7:]))
    runtime = util_models.RuntimeOptions()
    out = f"sdk-{uuid.uuid4().hex[:10]}"
    req = card_models.CreateAndDeliverRequest(
        card_template_id="tpl.schema",
        out_track_id=out,
        card_data=card_models.CreateAndDeliverRequestCardData(card_param_map={"title": "SDK 卡片"}),
        open_space_id=f"dtv1.card//IM_ROBOT.{userid}",
        im_robot_open_deliver_model=card_models.CreateAndDeliverRequestImRobotOpenDeliverModel(
            space_type="IM_ROBOT", robot_code=sb.app_key
        ),
        callback_type="STREAM",
        user_id_type=1,
    )
    headers = card_models.CreateAndDeliverHeaders(x_acs_dingtalk_access_token=sb.token)
    resp = client.create_and_deliver_with_options(req, headers, runtime)
    assert resp.body.success and resp.body.result.deliver_results[0].success
    update = card_models.UpdateCardRequest(
        out_track_id=out,
        card_data=card_models.UpdateCardRequestCardData(card_param_map={"status": "更新"}),
        card_update_options=card_models.UpdateCardRequestCardUpdateOptions(update_card_data_by_key=True),
    )
    headers2 = card_models.UpdateCardHeaders(x_acs_dingtalk_access_token=sb.token)
    assert client.update_card_with_options(update, headers2, runtime).body.result is True
    card = sb.admin("GET", "messages", params={"userid": userid, "kind": "card"}).json()["messages"][-1]["card"]
    assert card["cardData"]["cardParamMap"] == {"title": "SDK 卡片", "status": "更新"}
