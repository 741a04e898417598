"""Custom robots (自定义机器人, §4.1): the group webhook with 加签, 20 messages a minute and a 10-minute ban.

DingTalk's console creates these; here `POST /_sandbox/robots` does, returning the webhook token and the `SEC…`
secret the workbench must be configured with.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.crypto import robot_sign
from sandbox.errors import AdminError, OapiError, json_response, oapi_ok
from sandbox.inputs import admin_body, admin_str, oapi_body
from sandbox.keys import state_of

routes = web.RouteTableDef()

PER_MINUTE = 20
BAN_SECONDS = 600.0
SIGN_TOLERANCE_MS = 3600 * 1000
MSG_TYPES = ("text", "link", "markdown", "actionCard", "feedCard")


@dataclass(slots=True)
class Robot:
    title: str
    access_token: str
    secret: str
    conversation: str
    sent: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0
    uuids: set[str] = field(default_factory=set)


class RobotStore:
    def __init__(self) -> None:
        self.by_token: dict[str, Robot] = {}


@routes.post("/_sandbox/robots")
async def create_robot(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await admin_body(request)
    title = admin_str(body, "title")
    cid = admin_str(body, "open_conversation_id", required=False)
    if cid is not None and state.groups.get(cid) is None:
        raise AdminError("群不存在", field="open_conversation_id", code="not_found")
    if cid is None:
        cid = state.groups.create(title, None, [], "custom_robot").open_conversation_id
    robot = Robot(title, secrets.token_hex(32), "SEC" + secrets.token_hex(32), cid)
    state.robots.by_token[robot.access_token] = robot
    return json_response(
        {
            "access_token": robot.access_token,
            "secret": robot.secret,
            "open_conversation_id": cid,
            "webhook": f"{state.settings.base_url}/robot/send?access_token={robot.access_token}",
        }
    )


def _check_sign(robot: Robot, timestamp: str, sign: str) -> None:
    if not timestamp or not sign or not timestamp.isdigit():
        raise OapiError(310000, "sign not match, more: 缺少 timestamp 或 sign")
    if abs(int(timestamp) - int(time.time() * 1000)) > SIGN_TOLERANCE_MS:
        raise OapiError(310000, "invalid timestamp, more: 时间戳与系统时间相差超过1小时")
    # A '+' the client forgot to URL-encode arrives as a space; DingTalk's own decoder tolerates that too.
    if not hmac.compare_digest(robot_sign(robot.secret, timestamp), sign.replace(" ", "+")):
        raise OapiError(310000, "sign not match")


def _admit(robot: Robot) -> None:
    """20 messages per rolling minute; the 21st bans the robot for 10 minutes (§4.1)."""
    now = time.monotonic()
    if robot.banned_until > now:
        raise OapiError(410100, "send too fast, exceed 20 times per minute")
    while robot.sent and now - robot.sent[0] >= 60:
        robot.sent.popleft()
    if len(robot.sent) >= PER_MINUTE:
        robot.banned_until = now + BAN_SECONDS
        raise OapiError(410100, "send too fast, exceed 20 times per minute")
    robot.sent.append(now)


@routes.post("/robot/send")
async def robot_send(request: web.Request) -> web.Response:
    state = state_of(request)
    robot = state.robots.by_token.get(request.query.get("access_token", ""))
    if robot is None:
        raise OapiError(300005, "token is not exist")
    _check_sign(robot, request.query.get("timestamp", ""), request.query.get("sign", ""))
    if request.content_type != "application/json":
        raise OapiError(43004, "无效的HTTP HEADER Content-Type")
    body: dict[str, Any] = await oapi_body(request)
    msgtype = body.get("msgtype")
    if msgtype not in MSG_TYPES:
        raise OapiError(400105, "不支持的消息类型")
    content = body.get(msgtype)
    if not isinstance(content, dict):
        raise OapiError(40035, f"缺少参数 {msgtype}")
    uuid = body.get("msgUuid")
    if isinstance(uuid, str) and uuid and uuid in robot.uuids:
        return oapi_ok()
    _admit(robot)
    if isinstance(uuid, str) and uuid:
        robot.uuids.add(uuid)
    payload = {msgtype: content}
    if isinstance(body.get("at"), dict):
        payload["at"] = body["at"]
    state.messages.add("robot_webhook", robot.title, [], robot.conversation, msgtype, payload)
    return oapi_ok()
