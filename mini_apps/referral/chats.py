"""Referral chats: the group chat a receiving department (or institution) takes its referral cards in.

Hospitals work referrals in the department's group, not one-to-one, and one group card costs one DingTalk call
where one-to-one cards cost one per person (against a standard org's 5,000 calls a month). A `ReferralChat` ties an
org node — an internal department of an institution, or an institution — to a group:

- registered (`PUT /api/referrals/chats/<node_id>`): an existing scene group the app's robot is in, checked at
  DingTalk (`scenegroup/get`). The workbench cannot list a group's members, so whoever registers it vouches that
  it holds the node's members and the institution's referral coordinators; the cards rely on that.
- created (`POST .../create`): a scene group made from `DINGTALK_SCENE_GROUP_TEMPLATE_ID` with the node's members
  (everyone with a position at the node or below) and the referral coordinators granted on its institution; the
  owner is the node's leader, else the caller. The userids put in are kept (`member_userids`).

Keeping a created group in step: whenever a card is about to go to it and the people who belong in it (the node's
members, the institution's coordinators) differ from `member_userids`, `schedule_sync` queues `sync_chat_job` after
the commit; it adds the newcomers and removes those who left (never the owner), so a departed colleague stops
seeing the department's patients. Meanwhile the newcomers get their cards one-to-one. `POST .../sync` runs the
same sync at once.

Who is in the group for the cards (`covered`): for a created group the userids it was given, for a registered one
the node's members and the institution's coordinators as the org tree has them now. The receiving side
(`timers.receiving_side`) minus those — coordinators of the county's referral office, a family-doctor team
outside the node, a named doctor of another department — still get one-to-one cards, so nobody who may act
loses the card. Only receivers may act on a group card (`cards._act`): a group member who is not one is refused.

Managers: county admins (`admin`), institution admins and referral coordinators whose scope holds the node;
another node is a 404, as if it did not exist.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event, orm

from bot import groups
from mini_apps.referral.models import Referral, ReferralChat
from org_sync.models import OrgMember, OrgMembership, OrgNode
from workbench import audit, db
from workbench.auth.models import RoleGrant
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.dingtalk import get_gateway
from workbench.dingtalk.errors import DingTalkError, ThrottledError, TransientError
from workbench.errors import ApiError
from workbench.queue import get_queue

log = logging.getLogger(__name__)

MANAGERS = ("admin", "institution_admin", "referral_coordinator")
MAX_MENTIONS = 50  # @s on one group card: beyond this a mention is noise, and DingTalk's limit is unpublished
_PENDING = "referral.chats.pending"  # session.info: node ids whose group to sync after commit
NO_TEMPLATE = "未配置 DINGTALK_SCENE_GROUP_TEMPLATE_ID（场景群模板），无法建群；可在钉钉建群后登记群会话ID"


# -- nodes and people ---------------------------------------------------------------------------------------------


def _ancestors(node: OrgNode) -> list[int]:
    return [int(part) for part in node.path.strip("/").split("/") if part]


def institution_of(session: orm.Session, node: OrgNode) -> OrgNode | None:
    """The institution a node is or lies in (the nearest one on its path), None outside institutions."""
    if node.level in INSTITUTION_LEVELS:
        return node
    rows = session.scalars(
        sa.select(OrgNode).where(OrgNode.id.in_(_ancestors(node)), OrgNode.level.in_(INSTITUTION_LEVELS))
    ).all()
    return max(rows, key=lambda n: len(n.path)) if rows else None


def _live(select: sa.Select) -> sa.Select:
    return select.where(OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))


def node_members(session: orm.Session, node: OrgNode) -> list[str]:
    """Userids of everyone with a position at the node or below it, the node's leaders first."""
    rows = session.execute(
        _live(
            sa.select(OrgMember.userid, sa.func.max(sa.case((OrgMembership.node_id == node.id, 1), else_=0)))
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgNode.path.startswith(node.path, autoescape=True), OrgNode.deleted_at.is_(None))
        )
        .group_by(OrgMember.userid)
        .order_by(OrgMember.userid)
    ).all()
    return [userid for userid, _ in rows]


def leader_of(session: orm.Session, node: OrgNode) -> str | None:
    return session.scalar(
        _live(
            sa.select(OrgMember.userid)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .where(OrgMembership.node_id == node.id, OrgMembership.is_leader.is_(True))
        )
        .order_by(OrgMember.id)
        .limit(1)
    )


def coordinators(session: orm.Session, institution_id: int) -> list[str]:
    """Userids of the referral coordinators granted on the institution itself (not on the county above it)."""
    return list(
        session.scalars(
            _live(
                sa.select(OrgMember.userid)
                .join(RoleGrant, RoleGrant.member_id == OrgMember.id)
                .where(
                    RoleGrant.role == "referral_coordinator",
                    RoleGrant.revoked_at.is_(None),
                    RoleGrant.node_id == institution_id,
                )
            )
            .distinct()
            .order_by(OrgMember.userid)
        )
    )


def _desired(session: orm.Session, node: OrgNode) -> list[str]:
    institution = institution_of(session, node)
    extra = coordinators(session, institution.id) if institution is not None else []
    return list(dict.fromkeys([*node_members(session, node), *extra]))


# -- for the cards ------------------------------------------------------------------------------------------------


def chat_for(session: orm.Session, referral: Referral) -> ReferralChat | None:
    """The group the referral's cards go to: the target department's, else the target institution's."""
    for node_id in (referral.target_department_id, referral.target_institution_id):
        if node_id is None:
            continue
        chat = session.scalar(
            sa.select(ReferralChat)
            .join(OrgNode, OrgNode.id == ReferralChat.node_id)
            .where(
                ReferralChat.node_id == node_id,
                ReferralChat.open_conversation_id.is_not(None),
                OrgNode.deleted_at.is_(None),
            )
        )
        if chat is not None:
            return chat
    return None


def covered(session: orm.Session, chat: ReferralChat, receivers: list[str]) -> list[str]:
    """The receivers who are in the chat's group (see the module docstring), in the receivers' order."""
    if chat.member_userids is not None:
        inside = set(chat.member_userids)
    else:
        node = session.get(OrgNode, chat.node_id)
        inside = set(_desired(session, node)) if node is not None else set()
    return [u for u in receivers if u in inside]


def out_of_step(session: orm.Session, chat: ReferralChat) -> bool:
    """Whether a created group's recorded members differ from who belongs in it now (registered groups: never)."""
    if chat.member_userids is None or not chat.open_conversation_id:
        return False
    node = session.get(OrgNode, chat.node_id)
    if node is None:
        return False
    missing, extra = _difference(session, chat, node)
    return bool(missing or extra)


def schedule_sync(session: orm.Session, node_id: int) -> None:
    """Queue `sync_chat_job` for the node's group once the caller's transaction commits (nothing on rollback)."""
    session.info.setdefault(_PENDING, set()).add(node_id)


@event.listens_for(orm.Session, "after_commit")
def _queue_syncs(session: orm.Session) -> None:
    for node_id in sorted(session.info.pop(_PENDING, None) or ()):
        # One job id per node: a burst of referrals while the sync waits makes one sync.
        get_queue().enqueue(sync_chat_job, node_id, job_id=f"referral-chat-{node_id}", retries=3)


@event.listens_for(orm.Session, "after_rollback")
def _forget_syncs(session: orm.Session) -> None:
    session.info.pop(_PENDING, None)


def mentions(session: orm.Session, referral: Referral, inside: list[str]) -> dict[str, str]:
    """{userid: name} to @ on the group card: the target institution's coordinators and the named doctor, among
    the receivers in the group (an @ of someone outside it reaches nobody), at most `MAX_MENTIONS`."""
    wanted = set(coordinators(session, referral.target_institution_id))
    if referral.target_member_id is not None:
        named = session.scalar(_live(sa.select(OrgMember.userid).where(OrgMember.id == referral.target_member_id)))
        if named:
            wanted.add(named)
    chosen = [u for u in inside if u in wanted][:MAX_MENTIONS]
    if not chosen:
        return {}
    names = dict(
        session.execute(
            _live(sa.select(OrgMember.userid, OrgMember.name).where(OrgMember.userid.in_(chosen))).order_by(
                OrgMember.id.desc()
            )
        ).all()
    )
    return {u: names.get(u, "") for u in chosen}


# -- the API ------------------------------------------------------------------------------------------------------


def _managed_node(session: orm.Session, principal: Principal, node_id: int) -> OrgNode:
    """The node if the caller manages it: 404 when outside their scope, 422 when it is not a department of an
    institution or an institution (where referrals are received)."""
    node = session.get(OrgNode, node_id)
    if node is None or node.deleted_at is not None or not principal.scope(*MANAGERS).covers_path(node.path):
        raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="node_id")
    inside = institution_of(session, node)
    if node.level not in (*INSTITUTION_LEVELS, "internal_department") or inside is None:
        raise ApiError("validation_error", "转诊群只能设在医疗机构或其内设科室", status=422, field="node_id")
    return node


def view(session: orm.Session, chat: ReferralChat) -> dict[str, Any]:
    node = session.get(OrgNode, chat.node_id)
    return {
        "node_id": chat.node_id,
        "node_name": node.name if node else "",
        "open_conversation_id": chat.open_conversation_id,
        "chat_id": chat.chat_id,
        "owner_userid": chat.owner_userid,
        "source": "registered" if chat.member_userids is None else "created",
        "member_count": len(chat.member_userids) if chat.member_userids is not None else None,
        "created_by": chat.created_by,
        "created_at": chat.created_at,
        "last_synced_at": chat.last_synced_at,
        "last_error": chat.last_error,
    }


def _row(session: orm.Session, node_id: int) -> ReferralChat | None:
    return session.scalar(sa.select(ReferralChat).where(ReferralChat.node_id == node_id))


def _insert_once(session: orm.Session) -> None:
    """Flush a new chat row; a colleague's concurrent request that inserted the node's row first is a 409."""
    try:
        session.flush()
    except sa.exc.IntegrityError:
        session.rollback()
        raise ApiError("conflict", "该节点的转诊群正由他人设置，请刷新后再试", status=409, field="node_id") from None


def _audit(principal: Principal, action: str, chat: ReferralChat, session: orm.Session, **detail: Any) -> None:
    audit.record(
        principal,
        action,
        resource_type="referral_chat",
        resource_id=chat.id,
        node_id=chat.node_id,
        detail={"open_conversation_id": chat.open_conversation_id, **detail},
        session=session,
    )


def list_chats(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    """The chats of the nodes the caller manages."""
    session = session or db.session()
    rows = session.scalars(
        sa.select(ReferralChat)
        .join(OrgNode, OrgNode.id == ReferralChat.node_id)
        .where(principal.scope(*MANAGERS).subtree(OrgNode.path))
        .order_by(ReferralChat.node_id)
    ).all()
    return {"items": [view(session, chat) for chat in rows]}


def get_chat(principal: Principal, node_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    _managed_node(session, principal, node_id)
    chat = _row(session, node_id)
    if chat is None:
        raise ApiError("not_found", "该节点没有转诊群", status=404, field="node_id")
    return view(session, chat)


def register_chat(
    principal: Principal, node_id: int, conversation_id: str, session: orm.Session | None = None
) -> dict[str, Any]:
    """Register an existing group for the node (replacing what it had): 422 `conversation_id` when DingTalk does
    not know it, 502 when DingTalk cannot be asked."""
    session = session or db.session()
    node = _managed_node(session, principal, node_id)
    conversation_id = conversation_id.strip()
    try:
        group = get_gateway().oapi("/topapi/im/chat/scenegroup/get", {"open_conversation_id": conversation_id})
    except DingTalkError as exc:
        if exc.code == "40035":  # DingTalk's answer for a conversation it does not have
            raise ApiError(
                "validation_error", "钉钉中没有该群（会话ID不正确，或不是场景群）", status=422, field="conversation_id"
            ) from None
        raise ApiError("dingtalk_error", f"钉钉接口出错（{exc.code}），请稍后再试", status=502) from None
    chat = _row(session, node.id) or ReferralChat(node_id=node.id, created_by=principal.actor)
    chat.open_conversation_id = conversation_id
    chat.chat_id = (group.get("result") or {}).get("chat_id")
    chat.owner_userid = (group.get("result") or {}).get("owner_staff_id")
    chat.member_userids = None
    chat.created_by = principal.actor
    chat.created_at = utcnow()
    chat.last_synced_at = utcnow()
    chat.last_error = None
    session.add(chat)
    _insert_once(session)
    _audit(principal, "referral.chat.register", chat, session)
    session.commit()
    return view(session, chat)


def create_chat(principal: Principal, node_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    """Create the node's scene group now (one DingTalk call). 409 when the node has a group already or no group
    template is configured; 502 (and `last_error`) when DingTalk refuses."""
    session = session or db.session()
    node = _managed_node(session, principal, node_id)
    chat = _row(session, node.id)
    if chat is not None and chat.open_conversation_id:
        raise ApiError("conflict", "该节点已有转诊群，请先删除再新建", status=409, field="node_id")
    template = current_app.config["SETTINGS"].dingtalk.scene_group_template_id
    if not template:
        raise ApiError("no_template", NO_TEMPLATE, status=409, field="node_id")
    owner = leader_of(session, node) or principal.userid
    if not owner:
        raise ApiError(
            "no_owner", "该节点没有负责人，请以钉钉账号登录后建群（群主为建群人）", status=409, field="node_id"
        )
    members = list(dict.fromkeys([owner, *_desired(session, node)]))
    if chat is None:
        chat = ReferralChat(node_id=node.id, created_by=principal.actor, created_at=utcnow())
        session.add(chat)
        _insert_once(session)
    session.commit()  # the row's created_at makes the group's uuid: a retry finds the same group
    institution = institution_of(session, node)
    title = f"{node.name}转诊群"
    if institution is not None and institution.id != node.id:
        title = f"{institution.name}·{title}"
    try:
        group = groups.create_scene_group(title[:60], owner, members, template_id=template, uuid=_group_uuid(chat))
    except DingTalkError as exc:
        session.rollback()
        chat = _row(session, node.id)
        chat.last_error = f"钉钉接口出错（{exc.code}）：{exc.message}"[:300]
        _audit(principal, "referral.chat.create", chat, session, error=exc.code)
        session.commit()
        raise ApiError("dingtalk_error", f"钉钉建群失败（{exc.code}）：{exc.message}", status=502) from None
    chat.open_conversation_id, chat.chat_id, chat.owner_userid = group.open_conversation_id, group.chat_id, owner
    chat.member_userids = members
    chat.last_synced_at = utcnow()
    chat.last_error = None
    chat.created_by = principal.actor
    _audit(principal, "referral.chat.create", chat, session, members=len(members))
    session.commit()
    log.info("referral chat created", extra={"result": {"node_id": node.id, "members": len(members)}})
    return view(session, chat)


def _group_uuid(chat: ReferralChat) -> str:
    """Stable for this row (a retry after a lost reply finds the same group) and not reused by a re-created row
    or another database with the same ids: DingTalk would hand back the old group."""
    return f"referral-chat-{chat.node_id}-{int(chat.created_at.timestamp() * 1000)}"


def _difference(session: orm.Session, chat: ReferralChat, node: OrgNode) -> tuple[list[str], list[str]]:
    """(who belongs in the created group and is not in it, who is in it and no longer belongs; never the owner)."""
    desired = _desired(session, node)
    current = list(chat.member_userids or [])
    missing = [u for u in desired if u not in set(current)]
    extra = [u for u in current if u not in set(desired) and u != chat.owner_userid]
    return missing, extra


def _sync(session: orm.Session, chat: ReferralChat, node: OrgNode) -> dict[str, int]:
    """Add and remove members at DingTalk, committing after each call so an interrupted sync resumes."""
    missing, extra = _difference(session, chat, node)
    if missing:
        groups.add_group_members(chat.open_conversation_id, missing)
        chat.member_userids = [*chat.member_userids, *missing]
        session.commit()
    if extra:
        groups.remove_group_members(chat.open_conversation_id, extra)
        chat.member_userids = [u for u in chat.member_userids if u not in set(extra)]
        session.commit()
    chat.last_synced_at = utcnow()
    chat.last_error = None
    session.commit()
    return {"added": len(missing), "removed": len(extra)}


def _failed(session: orm.Session, node_id: int, exc: DingTalkError) -> None:
    session.rollback()
    chat = _row(session, node_id)
    if chat is not None:
        chat.last_error = f"钉钉接口出错（{exc.code}）：{exc.message}"[:300]
        session.commit()


def sync_chat_job(node_id: int) -> dict[str, Any]:
    """The job: bring a created group's members in step (see the module docstring). DingTalk's refusals are kept
    in `last_error`; throttling and transient failures are raised so the queue retries."""
    session = db.session()
    chat = _row(session, node_id)
    node = session.get(OrgNode, node_id)
    result: dict[str, Any] = {"node_id": node_id, "added": 0, "removed": 0}
    if chat is None or node is None or chat.member_userids is None or not chat.open_conversation_id:
        session.rollback()
        return result
    try:
        result.update(_sync(session, chat, node))
    except DingTalkError as exc:
        _failed(session, node_id, exc)
        log.warning("referral chat sync failed", extra={"code": exc.code, "result": result})
        if isinstance(exc, ThrottledError | TransientError):
            raise
        result["error"] = exc.code
    log.info("referral chat synced", extra={"result": result})
    return result


def sync_chat(principal: Principal, node_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    """Bring a created group in step now (the job's work, for its managers). A registered group is the
    department's to manage: 409."""
    session = session or db.session()
    node = _managed_node(session, principal, node_id)
    chat = _row(session, node_id)
    if chat is None or not chat.open_conversation_id:
        raise ApiError("not_found", "该节点没有转诊群", status=404, field="node_id")
    if chat.member_userids is None:
        raise ApiError("conflict", "登记的已有群由科室自行管理成员，不能同步", status=409, field="node_id")
    try:
        counts = _sync(session, chat, node)
    except DingTalkError as exc:
        _failed(session, node_id, exc)
        raise ApiError("dingtalk_error", f"钉钉同步群成员失败（{exc.code}）：{exc.message}", status=502) from None
    _audit(principal, "referral.chat.sync", chat, session, **counts)
    session.commit()
    return view(session, chat)


def delete_chat(principal: Principal, node_id: int, session: orm.Session | None = None) -> None:
    """Stop sending the node's cards to its group (the group itself stays in DingTalk); cards go one-to-one."""
    session = session or db.session()
    _managed_node(session, principal, node_id)
    chat = _row(session, node_id)
    if chat is None:
        raise ApiError("not_found", "该节点没有转诊群", status=404, field="node_id")
    _audit(principal, "referral.chat.delete", chat, session)
    session.delete(chat)
    session.commit()
