"""The sending channels: how outbox rows become DingTalk calls, each within its API's limits (dingtalk.md §4, §8).

A channel plans the fewest calls for a set of claimed rows (`plan`) and makes one call (`send`). `idempotent`
says whether a call interrupted by a crash may be made again without anyone reading the message twice:

- custom robot webhook: yes, DingTalk drops a repeated `msgUuid`;
- work notification: yes, DingTalk delivers the same content to the same person once a day (repeats are reported
  as forbidden, code 143106) — unless the repeat falls on the next day, the residual window;
- enterprise robot one-to-one and group messages: no; the SDK sends no `msgUuid`, so an interrupted call is
  reported as "outcome unknown" and left for an administrator to retry rather than sent twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis as redis_lib
from alibabacloud_dingtalk.robot_1_0 import models as robot_models
from flask import current_app

from bot import messages
from bot.models import OutboxMessage, WebhookRobot
from workbench.db import session
from workbench.dingtalk import get_gateway
from workbench.queue import get_redis

log = logging.getLogger(__name__)

OTO_MAX_USERS = 20  # batchSend: 20 userIds a call
NOTICE_MAX_USERS = 100  # asyncsend_v2: 100 userids a call
WEBHOOK_PER_MINUTE = 19  # DingTalk bans a robot for 10 minutes past 20 a minute; one below leaves room for skew
WEBHOOK_WINDOW = 60.0
DIGEST_MAX_BYTES = 15000  # webhook bodies above ~20 KB are refused (errcode 460101); leave room for the wrapper
DIGEST_MAX_ITEMS = 50


@dataclass
class Call:
    """One DingTalk call planned for some rows: `parts` pairs each row with the recipients the call reaches."""

    uuid: str
    parts: list[tuple[OutboxMessage, list[str]]]
    message: dict = field(default_factory=dict)

    @property
    def userids(self) -> list[str]:
        return [u for _row, userids in self.parts for u in userids]


class Channel(ABC):
    name: str = ""
    quota_kind: str = "api"  # which monthly quota its calls count against (dingtalk.md §8.4)
    idempotent: bool = False
    batch_size: int = 0  # recipients per call, for person channels

    def plan(self, rows: Sequence[OutboxMessage]) -> list[Call]:
        """Person channels: rows with the same content share calls, recipients packed `batch_size` a call."""
        calls: list[Call] = []
        by_content: dict[str, list[OutboxMessage]] = defaultdict(list)
        for row in rows:
            by_content[row.content_digest].append(row)
        for group in by_content.values():
            call = Call(uuid.uuid4().hex, [], group[0].payload)
            for row in group:
                pending = row.pending_recipients
                while pending:
                    room = self.batch_size - len(call.userids)
                    call.parts.append((row, pending[:room]))
                    pending = pending[room:]
                    if len(call.userids) == self.batch_size:
                        calls.append(call)
                        call = Call(uuid.uuid4().hex, [], group[0].payload)
            if call.parts:
                calls.append(call)
        return calls

    def admit(self, call: Call) -> bool:
        """Whether the call may go now (a channel-level rate limit); a refused call waits for the next run."""
        return True

    @abstractmethod
    def send(self, call: Call) -> dict:
        """Make the call; return DingTalk's ids for the rows (raises `DingTalkError`)."""


class WebhookChannel(Channel):
    """A custom group robot (自定义机器人) with 加签: alerts for one robot are folded into digests, and a per-robot
    sliding window keeps it under 20 posts a minute, so a storm is delayed and merged, never dropped or banned."""

    name = "robot_webhook"
    quota_kind = "message"
    idempotent = True

    def plan(self, rows: Sequence[OutboxMessage]) -> list[Call]:
        calls: list[Call] = []
        current: list[OutboxMessage] = []
        size = 0
        for row in rows:
            row_size = messages.size(row.payload)
            if current and (size + row_size > DIGEST_MAX_BYTES or len(current) >= DIGEST_MAX_ITEMS):
                calls.append(self._call(current))
                current, size = [], 0
            current.append(row)
            size += row_size
        if current:
            calls.append(self._call(current))
        return calls

    def _call(self, rows: list[OutboxMessage], call_uuid: str | None = None) -> Call:
        digest = messages.digest([row.payload for row in rows])
        return Call(call_uuid or uuid.uuid4().hex, [(row, []) for row in rows], digest)

    def rebuild(self, call_uuid: str, rows: list[OutboxMessage]) -> Call:
        """The same digest with the same `msgUuid`, for re-sending a call a crash interrupted."""
        return self._call(sorted(rows, key=lambda r: r.id), call_uuid)

    def admit(self, call: Call) -> bool:
        return get_limiter().acquire(call.parts[0][0].target)

    def send(self, call: Call) -> dict:
        robot_name = call.parts[0][0].target
        robot = session().query(WebhookRobot).filter_by(name=robot_name).one_or_none()
        if robot is None:
            from workbench.dingtalk.errors import DingTalkError

            raise DingTalkError("robot_not_configured", f"未配置机器人 {robot_name}", api="/robot/send")
        get_gateway().webhook(robot.access_token, messages.to_webhook(call.message, call.uuid), secret=robot.secret)
        return {"msg_uuid": call.uuid}


class RobotOtoChannel(Channel):
    """The enterprise robot's one-to-one messages (`batchSend`, 20 people a call)."""

    name = "robot_oto"
    batch_size = OTO_MAX_USERS

    def send(self, call: Call) -> dict:
        msg_key, msg_param = messages.to_robot(call.message)
        request = robot_models.BatchSendOTORequest(
            robot_code=_robot_code(), user_ids=call.userids, msg_key=msg_key, msg_param=msg_param
        )
        body = get_gateway().api("robot_1_0", "batch_send_oto", request)
        return {
            "process_query_key": body.process_query_key,
            "invalid": list(body.invalid_staff_id_list or []),
            "flow_controlled": list(body.flow_controlled_staff_id_list or []),
        }


class RobotGroupChannel(Channel):
    """The enterprise robot's messages to a group (`groupMessages/send`), one call a row."""

    name = "robot_group"

    def plan(self, rows: Sequence[OutboxMessage]) -> list[Call]:
        return [Call(uuid.uuid4().hex, [(row, [])], row.payload) for row in rows]

    def send(self, call: Call) -> dict:
        msg_key, msg_param = messages.to_robot(call.message)
        request = robot_models.OrgGroupSendRequest(
            robot_code=_robot_code(),
            open_conversation_id=call.parts[0][0].target,
            msg_key=msg_key,
            msg_param=msg_param,
        )
        body = get_gateway().api("robot_1_0", "org_group_send", request)
        return {"process_query_key": body.process_query_key}


class WorkNoticeChannel(Channel):
    """Work notifications (工作通知, `asyncsend_v2`, 100 userids a call); who actually got them is read later
    with `getsendresult` (`bot.outbox.fetch_send_results`)."""

    name = "work_notice"
    idempotent = True
    batch_size = NOTICE_MAX_USERS

    def send(self, call: Call) -> dict:
        body = {
            "agent_id": _settings().agent_id,
            "userid_list": ",".join(call.userids),
            "msg": messages.to_work_notice(call.message),
        }
        reply = get_gateway().oapi("/topapi/message/corpconversation/asyncsend_v2", body)
        return {"task_id": str(reply["task_id"])}


class CardChannel(Channel):
    """Interactive cards (`createAndDeliver`, §5.1), one call a card. Idempotent through the card's own
    `outTrackId`: a repeated create answers `param.cardAlreadyExist`, which means the first one got there."""

    name = "card"
    idempotent = True

    def plan(self, rows: Sequence[OutboxMessage]) -> list[Call]:
        return [Call(uuid.uuid4().hex, [(row, [])], row.payload) for row in rows]

    def send(self, call: Call) -> dict:
        from alibabacloud_dingtalk.card_1_0 import models as card_models

        from workbench.dingtalk.errors import DingTalkError

        row, _ = call.parts[0]
        payload = call.message
        space_type = payload["open_space_id"].removeprefix("dtv1.card//").split(".", 1)[0]
        request = card_models.CreateAndDeliverRequest(
            out_track_id=row.out_track_id,
            card_template_id=payload["template_id"],
            card_data=card_models.CreateAndDeliverRequestCardData(card_param_map=payload["card_data"]),
            callback_type=payload["callback_type"],
            callback_route_key=payload.get("callback_route_key"),
            open_space_id=payload["open_space_id"],
            user_id_type=1,
        )
        if space_type == "IM_GROUP":
            request.im_group_open_deliver_model = card_models.CreateAndDeliverRequestImGroupOpenDeliverModel(
                robot_code=_robot_code(),
                at_user_ids=payload.get("at_userids") or None,
                recipients=payload.get("recipients") or None,
            )
            request.im_group_open_space_model = card_models.CreateAndDeliverRequestImGroupOpenSpaceModel(
                support_forward=True
            )
        else:
            request.im_robot_open_deliver_model = card_models.CreateAndDeliverRequestImRobotOpenDeliverModel(
                robot_code=_robot_code(), space_type="IM_ROBOT"
            )
            request.im_robot_open_space_model = card_models.CreateAndDeliverRequestImRobotOpenSpaceModel(
                support_forward=True
            )
        try:
            body = get_gateway().api("card_1_0", "create_and_deliver", request)
        except DingTalkError as exc:
            if exc.code == "param.cardAlreadyExist":
                return {"out_track_id": row.out_track_id, "already_existed": True}
            raise
        results = body.result.deliver_results or [] if body.result else []
        failed = [r.error_msg for r in results if not r.success]
        if failed:
            raise DingTalkError("deliver_failed", "; ".join(str(f) for f in failed), api="/v1.0/card/instances")
        carriers = [r.carrier_id for r in results if r.carrier_id]
        return {"out_track_id": row.out_track_id, "process_query_key": carriers[0] if carriers else None}


CHANNELS: dict[str, Channel] = {
    ch.name: ch for ch in (WebhookChannel(), RobotOtoChannel(), RobotGroupChannel(), WorkNoticeChannel(), CardChannel())
}


def get_channel(name: str) -> Channel:
    return CHANNELS[name]


def _settings():
    return current_app.config["SETTINGS"].dingtalk


def _robot_code() -> str:
    return _settings().app_key  # an internal app's robot code is its AppKey (§4.2)


# -- the per-robot limiter --------------------------------------------------------------------------------------

_ACQUIRE = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return 1
"""


class RobotLimiter:
    """A sliding window of posts per robot, shared by every process through Redis (in-process without it)."""

    def __init__(self, redis: redis_lib.Redis | None, limit: int = WEBHOOK_PER_MINUTE, window: float = WEBHOOK_WINDOW):
        self.redis = redis
        self.limit = limit
        self.window = window
        self._local: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._script = redis.register_script(_ACQUIRE) if redis is not None else None

    def acquire(self, robot: str) -> bool:
        """Take a slot for one post by `robot` now, or say no (the caller waits for a later run)."""
        now = time.time()
        if self._script is not None:
            member = f"{now:.6f}-{uuid.uuid4().hex[:8]}"
            return bool(self._script(keys=[f"bot:webhook:{robot}"], args=[now, self.window, self.limit, member]))
        with self._lock:
            sent = self._local[robot]
            while sent and now - sent[0] >= self.window:
                sent.popleft()
            if len(sent) >= self.limit:
                return False
            sent.append(now)
            return True


def get_limiter() -> RobotLimiter:
    limiter = current_app.extensions.get("bot.limiter")
    if limiter is None:
        limiter = current_app.extensions["bot.limiter"] = RobotLimiter(get_redis())
    return limiter
