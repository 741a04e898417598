"""Everything the workbench sends to people and groups, kept in arrival order, plus the enterprise robot (§4.2).

The store is what the inbox shows and what `GET /_sandbox/messages` returns; cards appear there too, always with
their current data, so a test can assert on what a person actually sees after an update or a click.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.errors import AdminError, ApiError, json_response
from sandbox.inputs import api_body, int_field
from sandbox.keys import state_of
from sandbox.residents import known_user

routes = web.RouteTableDef()

KINDS = ("robot_webhook", "robot_oto", "robot_group", "work_notice", "card")
MSG_KEYS = frozenset(
    [
        "sampleText",
        "sampleMarkdown",
        "sampleImageMsg",
        "sampleLink",
        "sampleActionCard",
        "sampleAudio",
        "sampleFile",
        "sampleVideo",
    ]
    + [f"sampleActionCard{n}" for n in range(2, 7)]
)
MAX_OTO_USERS = 20
MAX_GROUP_PARAM_BYTES = 15000


def now_ms() -> int:
    return int(time.time() * 1000)


def query_key() -> str:
    """A processQueryKey/carrierId in DingTalk's style (opaque base64-like text)."""
    return secrets.token_urlsafe(24)


@dataclass(slots=True)
class Message:
    id: int
    kind: str
    at: int
    sender: str
    userids: list[str]
    conversation: str | None
    msg_type: str
    content: dict[str, Any]
    card_id: str | None = None
    process_query_key: str | None = None


class MessageStore:
    """All messages in arrival order; ids are increasing integers usable as a `since` cursor."""

    def __init__(self) -> None:
        self.items: list[Message] = []
        self.dedupe: dict[str, dict[str, Any]] = {}

    def add(
        self,
        kind: str,
        sender: str,
        userids: list[str],
        conversation: str | None,
        msg_type: str,
        content: dict[str, Any],
        *,
        card_id: str | None = None,
        process_query_key: str | None = None,
    ) -> Message:
        msg = Message(
            len(self.items) + 1,
            kind,
            now_ms(),
            sender,
            userids,
            conversation,
            msg_type,
            content,
            card_id,
            process_query_key,
        )
        self.items.append(msg)
        return msg

    def query(
        self, userid: str | None = None, conversation: str | None = None, kind: str | None = None, since: int = 0
    ) -> list[Message]:
        out = []
        for msg in self.items[since:]:
            if userid is not None and userid not in msg.userids:
                continue
            if conversation is not None and msg.conversation != conversation:
                continue
            if kind is not None and msg.kind != kind:
                continue
            out.append(msg)
        return out


def render_message(state: Any, msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": msg.id,
        "kind": msg.kind,
        "at": msg.at,
        "sender": msg.sender,
        "userids": msg.userids,
        "conversation": msg.conversation,
        "msg_type": msg.msg_type,
        "content": msg.content,
    }
    if msg.process_query_key:
        out["process_query_key"] = msg.process_query_key
    if msg.card_id:
        card = state.cards.get(msg.card_id)
        out["card"] = card.view() if card else None
    return out


@routes.get("/_sandbox/messages")
async def list_messages(request: web.Request) -> web.Response:
    state = state_of(request)
    query = request.query
    kind = query.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise AdminError(f"kind 只能是 {', '.join(KINDS)}", field="kind")
    since = int_field(query.get("since", "0"))
    if since is None or since < 0:
        raise AdminError("since 必须是非负整数（消息 id）", field="since")
    found = state.messages.query(query.get("userid") or None, query.get("conversation") or None, kind, since)
    return json_response({"messages": [render_message(state, m) for m in found]})


def check_robot_code(state: Any, body: dict[str, Any]) -> None:
    code = body.get("robotCode")
    if not code:
        raise ApiError(400, "invalidParameter.robotCode.empty", "robotCode不能为空")
    if code != state.settings.app_key:
        raise ApiError(400, "invalidParameter.robotCode.notExsit", "robotCode不存在")


def parse_msg(body: dict[str, Any], max_bytes: int | None = None) -> tuple[str, dict[str, Any]]:
    """Validate msgKey/msgParam; msgParam is a JSON string of an object."""
    key = body.get("msgKey")
    if not key:
        raise ApiError(400, "invalidParameter.msgKey.empty", "msgKey不能为空")
    if key not in MSG_KEYS:
        raise ApiError(400, "invalidParameter.msgKey.invalid", "msgKey不合法")
    raw = body.get("msgParam")
    if not isinstance(raw, str) or not raw:
        raise ApiError(400, "invalidParameter.msgParam.invalid", "msgParam必须是JSON字符串")
    if max_bytes is not None and len(raw.encode()) > max_bytes:
        raise ApiError(400, "invalidParameter.msgParam.tooLong", f"msgParam超过{max_bytes}字节")
    try:
        param = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "invalidParameter.msgParam.invalid", "msgParam不是合法的JSON") from exc
    if not isinstance(param, dict):
        raise ApiError(400, "invalidParameter.msgParam.invalid", "msgParam必须是JSON对象")
    return key, param


@routes.post("/v1.0/robot/oToMessages/batchSend")
async def batch_send(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    check_robot_code(state, body)
    user_ids = body.get("userIds")
    if not user_ids:
        raise ApiError(400, "invalidParameter.userIds.empty", "userIds不能为空")
    if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
        raise ApiError(400, "invalidParameter.userIds.invalid", "userIds必须是字符串数组")
    if len(user_ids) > MAX_OTO_USERS:
        raise ApiError(400, "invalidParameter.userIds.overMax", f"userIds超过最大限制{MAX_OTO_USERS}")
    key, param = parse_msg(body)
    uuid = body.get("msgUuid")
    if isinstance(uuid, str) and uuid and f"oto:{uuid}" in state.messages.dedupe:
        return json_response(state.messages.dedupe[f"oto:{uuid}"])
    with state.lock:
        # Org members and residents' accounts alike can get the robot's one-to-one messages.
        known = [u for u in dict.fromkeys(user_ids) if known_user(state, u)]
    invalid = [u for u in user_ids if u not in known]
    pqk = query_key()
    if known:
        state.messages.add("robot_oto", "应用机器人", known, None, key, param, process_query_key=pqk)
    reply = {"processQueryKey": pqk, "invalidStaffIdList": invalid, "flowControlledStaffIdList": []}
    if isinstance(uuid, str) and uuid:
        state.messages.dedupe[f"oto:{uuid}"] = reply
    return json_response(reply)


@routes.post("/v1.0/robot/groupMessages/send")
async def group_send(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    check_robot_code(state, body)
    cid = body.get("openConversationId")
    group = state.groups.get(cid) if isinstance(cid, str) else None
    if group is None:
        raise ApiError(400, "invalid.openConversationId", "openConversationId不合法或群不存在")
    key, param = parse_msg(body, MAX_GROUP_PARAM_BYTES)
    uuid = body.get("msgUuid")
    if isinstance(uuid, str) and uuid and f"group:{uuid}" in state.messages.dedupe:
        return json_response(state.messages.dedupe[f"group:{uuid}"])
    pqk = query_key()
    state.messages.add("robot_group", "应用机器人", [], cid, key, param, process_query_key=pqk)
    reply = {"processQueryKey": pqk}
    if isinstance(uuid, str) and uuid:
        state.messages.dedupe[f"group:{uuid}"] = reply
    return json_response(reply)
