"""Scene groups (场景群, §4.2): where group robot messages and group cards land.

Custom-robot webhooks also get a conversation here, so the inbox can list every place a group message can appear.
Members are org members or residents' accounts (`sandbox.residents.known_user`); anyone else is DingTalk's 60121.
`GET /_sandbox/groups` and `GET /_sandbox/groups/{open_conversation_id}` let tests check membership exactly.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.errors import AdminError, OapiError, json_response, oapi_ok
from sandbox.inputs import id_list, oapi_body
from sandbox.keys import state_of
from sandbox.messages import now_ms
from sandbox.residents import known_user

routes = web.RouteTableDef()

MAX_MEMBERS = 999


@dataclass(slots=True)
class Group:
    open_conversation_id: str
    chat_id: str
    title: str
    owner: str | None
    template_id: str
    members: list[str] = field(default_factory=list)
    uuid: str | None = None
    created: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "open_conversation_id": self.open_conversation_id,
            "chat_id": self.chat_id,
            "title": self.title,
            "owner_staff_id": self.owner,
            "template_id": self.template_id,
            "member_amount": len(self.members),
            "members": self.members,
        }


class GroupStore:
    def __init__(self) -> None:
        self.by_cid: dict[str, Group] = {}
        self.by_uuid: dict[str, Group] = {}

    def get(self, cid: str) -> Group | None:
        return self.by_cid.get(cid)

    def create(
        self, title: str, owner: str | None, members: list[str], template_id: str, uuid: str | None = None
    ) -> Group:
        cid = "cid" + secrets.token_urlsafe(16).replace("-", "A").replace("_", "B") + "=="
        group = Group(cid, "chat" + secrets.token_hex(16), title, owner, template_id, members, uuid, now_ms())
        self.by_cid[cid] = group
        if uuid:
            self.by_uuid[uuid] = group
        return group


def _users(state: Any, raw: Any, name: str) -> list[str]:
    ids = id_list(raw)
    if ids is None:
        raise OapiError(40035, f"参数 {name} 不合法")
    with state.lock:
        missing = [u for u in ids if not known_user(state, u)]
    if missing:
        raise OapiError(60121, f"找不到该用户: {','.join(missing[:5])}")
    return ids


def _group(state: Any, body: dict[str, Any]) -> Group:
    cid = body.get("open_conversation_id")
    if not isinstance(cid, str) or not cid:
        raise OapiError(40035, "缺少参数 open_conversation_id")
    group = state.groups.get(cid)
    if group is None:
        raise OapiError(40035, "open_conversation_id 对应的群不存在")
    return group


@routes.post("/topapi/im/chat/scenegroup/create")
async def create(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    title, template_id, owner = body.get("title"), body.get("template_id"), body.get("owner_user_id")
    for name, value in (("title", title), ("template_id", template_id), ("owner_user_id", owner)):
        if not isinstance(value, str) or not value:
            raise OapiError(40035, f"缺少参数 {name}")
    uuid = body.get("uuid") if isinstance(body.get("uuid"), str) and body.get("uuid") else None
    if uuid and uuid in state.groups.by_uuid:
        group = state.groups.by_uuid[uuid]
    else:
        _users(state, owner, "owner_user_id")
        members = list(dict.fromkeys([owner, *_users(state, body.get("user_ids"), "user_ids")]))
        if len(members) > MAX_MEMBERS:
            raise OapiError(40035, f"群成员不能超过 {MAX_MEMBERS} 人")
        group = state.groups.create(title, owner, members, template_id, uuid)
    return oapi_ok(result={"open_conversation_id": group.open_conversation_id, "chat_id": group.chat_id})


@routes.post("/topapi/im/chat/scenegroup/member/add")
async def member_add(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    group = _group(state, body)
    ids = _users(state, body.get("user_ids"), "user_ids")
    if not ids:
        raise OapiError(40035, "缺少参数 user_ids")
    group.members = list(dict.fromkeys([*group.members, *ids]))
    return oapi_ok(success=True)


@routes.post("/topapi/im/chat/scenegroup/member/delete")
async def member_delete(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await oapi_body(request)
    group = _group(state, body)
    ids = id_list(body.get("user_ids"))
    if not ids:
        raise OapiError(40035, "缺少参数 user_ids")
    if group.owner in ids:
        raise OapiError(40035, "不能移除群主，请先转让群主")
    group.members = [m for m in group.members if m not in set(ids)]
    return oapi_ok(success=True)


@routes.post("/topapi/im/chat/scenegroup/update")
async def update(request: web.Request) -> web.Response:
    """Change the title or the owner (a new owner who is not in the group joins it)."""
    state = state_of(request)
    body = await oapi_body(request)
    group = _group(state, body)
    title, owner = body.get("title"), body.get("owner_user_id")
    if owner not in (None, ""):
        ids = _users(state, owner, "owner_user_id")
        if len(ids) != 1:
            raise OapiError(40035, "参数 owner_user_id 不合法")
        owner = group.owner = ids[0]
        group.members = list(dict.fromkeys([*group.members, owner]))
    if isinstance(title, str) and title:
        group.title = title
    return oapi_ok(success=True)


@routes.post("/topapi/im/chat/scenegroup/get")
async def get(request: web.Request) -> web.Response:
    state = state_of(request)
    group = _group(state, await oapi_body(request))
    view = group.view()
    view.pop("members")
    return oapi_ok(result={**view, "status": 1, "management_type": 0, "group_url": ""})


# -- admin: what tests check ------------------------------------------------------------------------------------


@routes.get("/_sandbox/groups")
async def admin_list(request: web.Request) -> web.Response:
    """Every group: cid, title, owner and member count."""
    state = state_of(request)
    with state.lock:
        groups = [
            {
                "open_conversation_id": g.open_conversation_id,
                "chat_id": g.chat_id,
                "title": g.title,
                "owner": g.owner,
                "member_count": len(g.members),
                "uuid": g.uuid,
            }
            for g in state.groups.by_cid.values()
        ]
    return json_response({"groups": groups})


@routes.get("/_sandbox/groups/{open_conversation_id}")
async def admin_get(request: web.Request) -> web.Response:
    """One group with its full member list."""
    state = state_of(request)
    cid = request.match_info["open_conversation_id"]
    with state.lock:
        group = state.groups.get(cid)
        if group is None:
            raise AdminError(f"群 {cid} 不存在", field="open_conversation_id", code="not_found", status=404)
        view = {**group.view(), "owner": group.owner, "uuid": group.uuid, "members": list(group.members)}
    return json_response(view)
