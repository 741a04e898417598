"""Interactive cards (§5): create-and-deliver, update in place, HTTP callback registration, and button clicks.

A click in the inbox (or `POST /_sandbox/cards/<outTrackId>/click`) is delivered to the workbench the way the
card asked for — a Stream CALLBACK frame or an HTTP POST to the registered route — and the reply's card data is
applied to the stored card, so the inbox then shows what a DingTalk user would see.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.crypto import ddpaas_signature
from sandbox.errors import AdminError, ApiError, json_response
from sandbox.inputs import admin_body, admin_str, api_body
from sandbox.keys import state_of
from sandbox.messages import now_ms, query_key
from sandbox.residents import known_user
from sandbox.stream import CARD_TOPIC

routes = web.RouteTableDef()

MAX_OUT_TRACK_ID = 64
MAX_KEY_BYTES = 100
MAX_VALUE_BYTES = 1024
CALLBACK_TIMEOUT = 5.0
_SPACE = re.compile(r"^(IM_GROUP|IM_ROBOT|IM_SINGLE|ONE_BOX)\.(.+)$")
_DELIVER_MODEL = {
    "IM_GROUP": "imGroupOpenDeliverModel",
    "IM_ROBOT": "imRobotOpenDeliverModel",
    "IM_SINGLE": "imSingleOpenDeliverModel",
    "ONE_BOX": "topOpenDeliverModel",
}


@dataclass(slots=True)
class Registration:
    route_key: str
    url: str
    api_secret: str | None


@dataclass(slots=True)
class Card:
    out_track_id: str
    template_id: str
    card_data: dict[str, str]
    private_data: dict[str, dict[str, str]]
    callback_type: str
    route_key: str | None
    open_space_id: str
    spaces: list[tuple[str, str]]
    user_id_type: int
    created: int
    updated: int
    version: int = 1
    clicks: list[dict[str, Any]] = field(default_factory=list)
    # A group card's imGroupOpenDeliverModel: whom it @-mentions and, when set, the only people who see it.
    at_user_ids: dict[str, str] = field(default_factory=dict)
    recipients: list[str] | None = None

    def view(self) -> dict[str, Any]:
        return {
            "outTrackId": self.out_track_id,
            "cardTemplateId": self.template_id,
            "cardData": {"cardParamMap": dict(self.card_data)},
            "privateData": {u: {"cardParamMap": dict(m)} for u, m in self.private_data.items()},
            "callbackType": self.callback_type,
            "callbackRouteKey": self.route_key,
            "openSpaceId": self.open_space_id,
            "spaces": [{"spaceType": t, "spaceId": s} for t, s in self.spaces],
            "userIdType": self.user_id_type,
            "createdAt": self.created,
            "updatedAt": self.updated,
            "version": self.version,
            "clicks": self.clicks,
            "atUserIds": dict(self.at_user_ids),
            "recipients": list(self.recipients) if self.recipients is not None else None,
        }


class CardStore:
    def __init__(self) -> None:
        self.cards: dict[str, Card] = {}
        self.routes: dict[str, Registration] = {}

    def get(self, out_track_id: str) -> Card | None:
        return self.cards.get(out_track_id)


def param_map(raw: Any, where: str) -> dict[str, str]:
    """Validate a cardParamMap: every value a string (numbers as "1", objects as JSON strings), sizes capped."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "param.cardParamMapInvalid", f"{where}.cardParamMap必须是对象")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise ApiError(
                400,
                "param.cardParamMapInvalid",
                f"{where}.cardParamMap.{key} 的值必须是字符串（数字、布尔、对象需转成字符串）",
            )
        if len(key.encode()) > MAX_KEY_BYTES or len(value.encode()) > MAX_VALUE_BYTES:
            raise ApiError(400, "param.cardParamMapInvalid", f"{where}.cardParamMap.{key} 超过长度限制")
    return dict(raw)


def _card_data(raw: Any, where: str = "cardData") -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ApiError(400, "param.cardParamMapInvalid", f"{where}必须是对象")
    return param_map(raw.get("cardParamMap"), where)


def _private_data(raw: Any) -> dict[str, dict[str, str]] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ApiError(400, "param.cardParamMapInvalid", "privateData必须是对象")
    return {user: _card_data(value, f"privateData.{user}") or {} for user, value in raw.items()}


def parse_spaces(open_space_id: Any) -> list[tuple[str, str]]:
    if not open_space_id:
        raise ApiError(400, "param.openSpaceIdEmpty", "openSpaceId不能为空")
    prefix = "dtv1.card//"
    if not isinstance(open_space_id, str) or not open_space_id.startswith(prefix):
        raise ApiError(400, "param.openSpaceIdInvalid", "openSpaceId格式不正确，应为 dtv1.card//<空间类型>.<空间ID>")
    spaces = []
    for part in open_space_id[len(prefix) :].split(";"):
        match = _SPACE.match(part.strip())
        if not match:
            raise ApiError(400, "param.openSpaceIdInvalid", f"openSpaceId中的空间不合法: {part}")
        spaces.append((match.group(1), match.group(2)))
    return spaces


def _merge(current: dict[str, str], update: dict[str, str], by_key: bool) -> dict[str, str]:
    return {**current, **update} if by_key else dict(update)


def apply_update(
    card: Card, card_data: dict[str, str] | None, private: dict[str, dict[str, str]] | None, options: Any
) -> None:
    """Overwrite (default) or merge by key, per `cardUpdateOptions` (§5.2)."""
    options = options if isinstance(options, dict) else {}
    if card_data is not None:
        card.card_data = _merge(card.card_data, card_data, options.get("updateCardDataByKey") is True)
    for user, data in (private or {}).items():
        by_key = options.get("updatePrivateDataByKey") is True
        card.private_data[user] = _merge(card.private_data.get(user, {}), data, by_key)
    card.updated = now_ms()
    card.version += 1


@routes.post("/v1.0/card/instances/createAndDeliver")
async def create_and_deliver(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    out_track_id = body.get("outTrackId")
    if not out_track_id or not isinstance(out_track_id, str):
        raise ApiError(400, "param.outTrackIdEmpty", "outTrackId不能为空")
    if len(out_track_id) > MAX_OUT_TRACK_ID:
        raise ApiError(400, "outTrackId.outOfLimit", f"outTrackId长度不能超过{MAX_OUT_TRACK_ID}")
    template_id = body.get("cardTemplateId")
    if not template_id or not isinstance(template_id, str):
        raise ApiError(400, "param.cardTemplateIdEmpty", "cardTemplateId不能为空")
    card_data = _card_data(body.get("cardData")) or {}
    private = _private_data(body.get("privateData")) or {}
    spaces = parse_spaces(body.get("openSpaceId"))
    for space_type, _ in spaces:
        model = body.get(_DELIVER_MODEL[space_type])
        if not isinstance(model, dict):
            raise ApiError(400, "param.openDeliverModelEmpty", f"缺少 {_DELIVER_MODEL[space_type]}")
        if (
            space_type in ("IM_GROUP", "IM_ROBOT")
            and model.get("robotCode", state.settings.app_key) != state.settings.app_key
        ):
            raise ApiError(400, "param.openDeliverModelError", "robotCode不正确")
        if space_type == "IM_GROUP" and not model.get("robotCode"):
            raise ApiError(400, "param.openDeliverModelError", "imGroupOpenDeliverModel.robotCode不能为空")
    group_model = body.get("imGroupOpenDeliverModel")
    at_user_ids, recipients = _group_audience(state, group_model if isinstance(group_model, dict) else {})
    callback_type = body.get("callbackType") or "STREAM"
    route_key = body.get("callbackRouteKey") or None
    if callback_type not in ("STREAM", "HTTP"):
        raise ApiError(400, "param.callbackTypeInvalid", "callbackType只能是STREAM或HTTP")
    if callback_type == "HTTP" and not route_key:
        raise ApiError(400, "param.callbackRouteKeyEmpty", "callbackType为HTTP时callbackRouteKey不能为空")
    user_id_type = body.get("userIdType", 1)
    if user_id_type not in (1, 2):
        raise ApiError(400, "param.userIdTypeInvalid", "userIdType只能是1或2")
    if out_track_id in state.cards.cards:
        raise ApiError(400, "param.cardAlreadyExist", "卡片已存在（outTrackId重复）")
    now = now_ms()
    card = Card(
        out_track_id,
        template_id,
        card_data,
        private,
        callback_type,
        route_key,
        body["openSpaceId"],
        spaces,
        user_id_type,
        now,
        now,
        at_user_ids=at_user_ids,
        recipients=recipients,
    )
    state.cards.cards[out_track_id] = card
    results = [_deliver(state, card, space_type, space_id) for space_type, space_id in spaces]
    return json_response({"success": True, "result": {"outTrackId": out_track_id, "deliverResults": results}})


def _group_audience(state: Any, model: dict[str, Any]) -> tuple[dict[str, str], list[str] | None]:
    """`atUserIds` ({userId: name}, or "@ALL") and `recipients` (visible only to these) of a group card."""
    at = model.get("atUserIds")
    if at is None:
        at = {}
    if not isinstance(at, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in at.items()):
        raise ApiError(400, "param.openDeliverModelError", "imGroupOpenDeliverModel.atUserIds必须是{userId: 名称}")
    recipients = model.get("recipients")
    if recipients is not None and (
        not isinstance(recipients, list) or not all(isinstance(u, str) and u for u in recipients)
    ):
        raise ApiError(400, "param.openDeliverModelError", "imGroupOpenDeliverModel.recipients必须是userId数组")
    with state.lock:
        unknown = [u for u in [*at, *(recipients or [])] if u != "@ALL" and not known_user(state, u)]
    if unknown:
        raise ApiError(400, "param.userIdNotExist", f"用户不存在: {','.join(unknown[:5])}")
    return dict(at), list(dict.fromkeys(recipients)) if recipients is not None else None


def _deliver(state: Any, card: Card, space_type: str, space_id: str) -> dict[str, Any]:
    """Put the card where its space says: a scene group, or a person's robot chat."""
    result: dict[str, Any] = {"spaceType": space_type, "spaceId": space_id, "success": False}
    if space_type == "IM_GROUP":
        if state.groups.get(space_id) is None:
            return {**result, "errorMsg": "群不存在（openConversationId无效）"}
        carrier = query_key()
        # A card with recipients is seen by them alone: the message lists them, so `?userid=` finds it for them.
        state.messages.add(
            "card",
            "应用机器人",
            list(card.recipients or []),
            space_id,
            "card",
            {"cardTemplateId": card.template_id, "atUserIds": dict(card.at_user_ids), "recipients": card.recipients},
            card_id=card.out_track_id,
            process_query_key=carrier,
        )
        return {**result, "success": True, "carrierId": carrier}
    if space_type == "IM_ROBOT":
        with state.lock:
            # A resident's account (not in the contacts) has a userid only, no unionId.
            if card.user_id_type == 1:
                userid = space_id if known_user(state, space_id) else None
            else:
                user = state.province.user_by_unionid(space_id)
                userid = user.userid if user is not None else None
        if userid is None:
            return {**result, "errorMsg": "用户不存在"}
        carrier = query_key()
        state.messages.add(
            "card",
            "应用机器人",
            [userid],
            None,
            "card",
            {"cardTemplateId": card.template_id},
            card_id=card.out_track_id,
            process_query_key=carrier,
        )
        return {**result, "success": True, "carrierId": carrier}
    return {**result, "errorMsg": f"沙箱不支持投放到 {space_type}"}


@routes.put("/v1.0/card/instances")
async def update_card(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    out_track_id = body.get("outTrackId")
    if not out_track_id:
        raise ApiError(400, "param.outTrackIdEmpty", "outTrackId不能为空")
    card_data = _card_data(body.get("cardData"))
    private = _private_data(body.get("privateData"))
    if card_data is None and not private:
        raise ApiError(400, "param.cardDataAndPrivateDataBothEmpty", "cardData和privateData不能同时为空")
    card = state.cards.get(out_track_id)
    if card is None:
        raise ApiError(400, "param.cardNotExist", "卡片不存在")
    apply_update(card, card_data, private, body.get("cardUpdateOptions"))
    return json_response({"success": True, "result": True})


@routes.post("/v1.0/card/callbacks/register")
async def register_callback(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    route_key, url = body.get("callbackRouteKey"), body.get("callbackUrl")
    if not isinstance(route_key, str) or not route_key:
        raise ApiError(400, "param.callbackRouteKeyEmpty", "callbackRouteKey不能为空")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ApiError(400, "param.callbackUrlInvalid", "callbackUrl必须是http(s)地址")
    secret = body.get("apiSecret") if isinstance(body.get("apiSecret"), str) and body.get("apiSecret") else None
    existing = state.cards.routes.get(route_key)
    if existing is None or body.get("forceUpdate") is True:
        existing = state.cards.routes[route_key] = Registration(route_key, url, secret)
    result = {"callbackUrl": existing.url}
    if existing.api_secret:
        result["apiSecret"] = existing.api_secret
    return json_response({"success": True, "result": result})


def _space_for(state: Any, card: Card, userid: str) -> tuple[str, str]:
    """The space the user clicks in: their robot chat if the card is there, else a group they are in."""
    for space_type, space_id in card.spaces:
        if space_type == "IM_ROBOT" and space_id == userid:
            return space_type, space_id
    for space_type, space_id in card.spaces:
        group = state.groups.get(space_id) if space_type == "IM_GROUP" else None
        if group is not None and userid in group.members:
            return space_type, space_id
    return card.spaces[0]


def click_payload(state: Any, card: Card, user: Any, action_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """The §5.4 actionCallback payload; `content` and `extension` are JSON strings, as DingTalk sends them."""
    user_key = user.userid if card.user_id_type == 1 else user.unionid
    space_type, space_id = _space_for(state, card, user_key)
    content = json.dumps({"cardPrivateData": {"actionIds": [action_id], "params": params}}, ensure_ascii=False)
    return {
        "type": "actionCallback",
        "outTrackId": card.out_track_id,
        "corpId": state.settings.corp_id,
        "userId": user_key,
        "content": content,
        "value": content,
        "spaceType": space_type,
        "spaceId": space_id,
        "userIdType": card.user_id_type,
        "extension": "{}",
    }


async def _via_stream(state: Any, payload: dict[str, Any]) -> tuple[Any, int]:
    if not state.stream.available("CALLBACK", CARD_TOPIC):
        raise AdminError(
            "没有订阅卡片回调的 Stream 客户端连接（topic /v1.0/card/instances/callback）", code="no_channel", status=409
        )
    data = json.dumps(payload, ensure_ascii=False)
    _, ack = await state.stream.send("CALLBACK", CARD_TOPIC, {}, data, CALLBACK_TIMEOUT)
    if ack is None:
        raise AdminError("Stream 客户端没有在 5 秒内回复卡片回调", code="callback_timeout", status=504)
    if ack.code != 200:
        raise AdminError(f"Stream 客户端回复了错误码 {ack.code}: {ack.message}", code="callback_failed", status=502)
    reply = ack.data.get("response") if isinstance(ack.data, dict) else None
    return reply, ack.elapsed_ms


async def _via_http(state: Any, card: Card, payload: dict[str, Any]) -> tuple[Any, int]:
    registration = state.cards.routes.get(card.route_key or "")
    if registration is None:
        raise AdminError(
            f"callbackRouteKey {card.route_key!r} 没有注册回调地址（POST /v1.0/card/callbacks/register）",
            code="no_channel",
            status=409,
        )
    headers = {}
    if registration.api_secret:
        timestamp = str(now_ms())
        headers = {
            "x-ddpaas-signature-timestamp": timestamp,
            "x-ddpaas-signature": ddpaas_signature(registration.api_secret, timestamp),
        }
    started = time.monotonic()
    try:
        async with state.events.session.post(
            registration.url, json=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT)
        ) as resp:
            text, status = await resp.text(), resp.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise AdminError(f"回调地址请求失败: {exc or '超时'}", code="callback_failed", status=502) from exc
    elapsed = int((time.monotonic() - started) * 1000)
    if status != 200:
        raise AdminError(f"回调地址返回 HTTP {status}", code="callback_failed", status=502)
    try:
        reply = json.loads(text) if text.strip() else None
    except ValueError as exc:
        raise AdminError("回调地址的回复不是JSON", code="callback_failed", status=502) from exc
    if isinstance(reply, dict) and set(reply) == {"response"}:
        reply = reply["response"]  # tolerate the Stream-style envelope over HTTP
    return reply, elapsed


def apply_reply(card: Card, user_key: str, reply: Any) -> str | None:
    """Apply the handler's cardData/userPrivateData to the card; returns why it could not, if so."""
    if isinstance(reply, str):
        try:
            reply = json.loads(reply) if reply.strip() else None
        except ValueError:
            return "回复不是JSON"
    if reply is None:
        return None
    if not isinstance(reply, dict):
        return "回复必须是JSON对象"
    try:
        card_data = _card_data(reply.get("cardData"))
        private = _card_data(reply.get("userPrivateData"), "userPrivateData")
    except ApiError as exc:
        return exc.message
    if card_data is None and private is None:
        return None
    apply_update(card, card_data, {user_key: private} if private is not None else None, reply.get("cardUpdateOptions"))
    return None


@routes.post("/_sandbox/cards/{out_track_id}/click")
async def click(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await admin_body(request)
    card = state.cards.get(request.match_info["out_track_id"])
    if card is None:
        raise AdminError("卡片不存在", field="outTrackId", code="not_found", status=404)
    userid = admin_str(body, "userid")
    action_id = admin_str(body, "action_id")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise AdminError("params 必须是JSON对象", field="params")
    with state.lock:
        user = state.province.users.get(userid)
    if user is None:
        raise AdminError("用户不存在", field="userid", code="not_found", status=404)
    payload = click_payload(state, card, user, action_id, params)
    if card.callback_type == "STREAM":
        reply, elapsed = await _via_stream(state, payload)
    else:
        reply, elapsed = await _via_http(state, card, payload)
    problem = apply_reply(card, payload["userId"], reply)
    card.clicks.append(
        {
            "at": now_ms(),
            "userid": userid,
            "action_id": action_id,
            "elapsed_ms": elapsed,
            "applied": problem is None,
            **({"error": problem} if problem else {}),
        }
    )
    out = {
        "reply": reply,
        "card": card.view(),
        "channel": card.callback_type.lower(),
        "elapsed_ms": elapsed,
        "within_2s": elapsed <= 2000,
    }
    if problem:
        out["apply_error"] = problem
    return json_response(out)
