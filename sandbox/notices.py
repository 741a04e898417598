"""Work notifications (工作通知, §4.3): `asyncsend_v2`, `getsendresult`, `getsendprogress`.

DingTalk accepts a send even when some recipients will not get it and reports them only in `getsendresult`
(invalid ids, and forbidden ones such as the same content to the same person twice in a day, code 143106).
The sandbox keeps that behaviour, so a client that never reads the send result is visibly wrong.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.errors import OapiError, oapi_ok
from sandbox.inputs import id_list, int_field, oapi_body
from sandbox.keys import state_of

routes = web.RouteTableDef()

MAX_USERS = 100
MAX_DEPTS = 20
MAX_MSG_BYTES = 2048
MSG_TYPES = ("text", "image", "voice", "file", "link", "oa", "markdown", "action_card")
DUPLICATE = "143106"


@dataclass(slots=True)
class SendTask:
    task_id: int
    delivered: list[str]
    invalid_users: list[str]
    invalid_depts: list[int]
    forbidden: list[str] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        """The send result; nobody reads in the sandbox, so every delivered recipient is unread."""
        return {
            "invalid_user_id_list": self.invalid_users,
            "forbidden_user_id_list": self.forbidden,
            "failed_user_id_list": [],
            "read_user_id_list": [],
            "unread_user_id_list": self.delivered,
            "invalid_dept_id_list": self.invalid_depts,
            "forbidden_list": [{"code": DUPLICATE, "count": 1, "userid": u} for u in self.forbidden],
        }


class NoticeStore:
    def __init__(self) -> None:
        self.tasks: dict[int, SendTask] = {}
        self.sent_today: set[tuple[str, str, str]] = set()
        self.next_task = 700000000001


def _agent(state: Any, body: dict[str, Any]) -> None:
    agent = body.get("agent_id")
    if agent in (None, ""):
        raise OapiError(40035, "缺少参数 agent_id")
    if str(agent) != state.settings.agent_id:
        raise OapiError(40035, "不合法的agent_id")


def _msg(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    raw = body.get("msg")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise OapiError(40035, "参数 msg 不是合法的JSON") from exc
    if not isinstance(raw, dict) or raw.get("msgtype") not in MSG_TYPES:
        raise OapiError(40035, "参数 msg 不合法：缺少或不支持的 msgtype")
    if not isinstance(raw.get(raw["msgtype"]), dict):
        raise OapiError(40035, f"参数 msg 缺少 {raw['msgtype']} 内容")
    canonical = json.dumps(raw, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if len(canonical.encode()) > MAX_MSG_BYTES:
        raise OapiError(40035, f"消息内容超过{MAX_MSG_BYTES}字节")
    return raw, hashlib.sha256(canonical.encode()).hexdigest()


@routes.post("/topapi/message/corpconversation/asyncsend_v2")
async def asyncsend(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    _agent(state, body)
    msg, digest = _msg(body)
    userids, dept_raw = id_list(body.get("userid_list")), id_list(body.get("dept_id_list"))
    if userids is None or dept_raw is None:
        raise OapiError(40035, "参数 userid_list 或 dept_id_list 不合法")
    to_all = body.get("to_all_user") in (True, "true", "True")
    if not userids and not dept_raw and not to_all:
        raise OapiError(40035, "userid_list、dept_id_list、to_all_user 至少填写一个")
    if len(userids) > MAX_USERS:
        raise OapiError(40035, f"userid_list 不能超过{MAX_USERS}个")
    if len(dept_raw) > MAX_DEPTS:
        raise OapiError(40035, f"dept_id_list 不能超过{MAX_DEPTS}个")
    dept_ids = [int_field(d) for d in dept_raw]
    with state.lock:
        province = state.province
        invalid_users = [u for u in userids if u not in province.users]
        invalid_depts = [d if d is not None else -1 for d in dept_ids if d is None or d not in province.departments]
        recipients = dict.fromkeys(u for u in userids if u in province.users)
        if to_all:
            recipients.update(dict.fromkeys(province.users))
        for dept_id in dept_ids:
            if dept_id is not None and dept_id in province.departments:
                for sub in province.subtree(dept_id):
                    recipients.update(dict.fromkeys(province.dept_userids(sub)))
    today = time.strftime("%Y-%m-%d")
    notices = state.notices
    delivered, forbidden = [], []
    for userid in recipients:
        key = (userid, digest, today)
        if key in notices.sent_today:
            forbidden.append(userid)
        else:
            notices.sent_today.add(key)
            delivered.append(userid)
    task = SendTask(notices.next_task, delivered, invalid_users, invalid_depts, forbidden)
    notices.next_task += 1
    notices.tasks[task.task_id] = task
    if delivered:
        state.messages.add("work_notice", "工作通知", delivered, None, msg["msgtype"], msg)
    return oapi_ok(task_id=task.task_id)


def _task(state: Any, body: dict[str, Any]) -> SendTask:
    _agent(state, body)
    task = state.notices.tasks.get(int_field(body.get("task_id")) or 0)
    if task is None:
        raise OapiError(40035, "task_id 不存在")
    return task


@routes.post("/topapi/message/corpconversation/getsendresult")
async def getsendresult(request: web.Request) -> web.Response:
    state = state_of(request)
    task = _task(state, await oapi_body(request))
    return oapi_ok(send_result=task.result())


@routes.post("/topapi/message/corpconversation/getsendprogress")
async def getsendprogress(request: web.Request) -> web.Response:
    state = state_of(request)
    _task(state, await oapi_body(request))
    return oapi_ok(progress={"progress_in_percent": 100, "status": 2})
