"""Telling one signed resident something: in their team's chat with an @, or one-to-one by the robot.

The public API other apps call (a referral's appointment, the reminders of `reminders`), in the caller's
transaction (the app's session, `workbench.db.session()`) — nothing goes out unless the caller commits:

- `notify_resident`: when the resident's current team has a chat and the resident is in it (`ChatMember`), a
  card in that chat @-ing them and visible only to them and the team's staff (`recipients`), so the other
  residents of the group see nothing of it; else, when the resident has a DingTalk account, a one-to-one robot
  message; else nothing ("unreachable").
- `message_resident`: a one-to-one robot message (a `bot.messages` template).

Both are idempotent per `key`: the same key again queues nothing new. The card's outTrackId is a hash of the key
and the resident's userid — the notice to this account — so it is unique per deployment's residents and within
DingTalk's 64 characters. Messages never carry the ID number or the phone; the name appears only to @ the resident
(and masked on the card).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import orm

from bot import messages
from bot.cards import send_card
from bot.models import BotCard, OutboxMessage
from bot.outbox import enqueue_message
from mini_apps.family_doctor import chats
from mini_apps.family_doctor.cards import RESIDENT_NOTICE
from mini_apps.family_doctor.models import ChatMember, Contract, Resident, TeamMember
from org_sync.models import OrgMember
from workbench import db, privacy
from workbench.errors import ApiError

log = logging.getLogger(__name__)

Reach = Literal["group", "robot", "unreachable"]
CARD_VALUE_BYTES = 1000  # DingTalk: a card parameter value is at most 1 KB


def _digest(key: str) -> str:
    if not key or len(key) > 200:
        raise ApiError("invalid_key", "key 必填且不超过200个字符", field="key")
    return hashlib.sha256(key.encode()).hexdigest()


def _robot_key(key: str, kind: str = "notice") -> str:
    return f"family_doctor:{kind}:{_digest(key)[:48]}"


def out_track_id(key: str, userid: str) -> str:
    """The group card's outTrackId for this notice to this account (≤64 characters)."""
    return "fd." + hashlib.sha256(f"{key}\n{userid}".encode()).hexdigest()[:48]


def _current_team(session: orm.Session, resident_id: int) -> int | None:
    return session.scalar(
        sa.select(Contract.team_id).where(Contract.resident_id == resident_id, Contract.is_current.is_(True))
    )


def _chat_for(session: orm.Session, team_id: int | None, userid: str) -> str | None:
    """The team chat's openConversationId when the resident is in it (as last confirmed by the chat sync)."""
    if team_id is None:
        return None
    chat = chats.chat_of(session, team_id)
    if chat is None or not chats.in_chat(session, team_id, userid):
        return None
    return chat.open_conversation_id


def _staff_userids(session: orm.Session, team_id: int) -> list[str]:
    """Who on the staff side may see a resident's card: the team's members still in the org, and whoever the chat
    sync put in the chat as staff."""
    members = session.scalars(
        sa.select(OrgMember.userid)
        .join(TeamMember, TeamMember.member_id == OrgMember.id)
        .where(TeamMember.team_id == team_id, OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
        .order_by(OrgMember.userid)
    ).all()
    in_chat = session.scalars(
        sa.select(ChatMember.userid)
        .where(ChatMember.team_id == team_id, ChatMember.kind == "staff")
        .order_by(ChatMember.userid)
    ).all()
    return list(dict.fromkeys([*members, *in_chat]))


def _markdown(lines: Sequence[str], link: str | None) -> str:
    text = "\n".join(f"- {line}" for line in lines)
    if len(text.encode()) > CARD_VALUE_BYTES:
        raise ApiError("message_too_long", "通知内容过长（卡片每项不超过1KB）", field="lines")
    if link and len(link.encode()) > CARD_VALUE_BYTES:
        raise ApiError("message_too_long", "链接过长", field="link")
    return text


def notify_resident(
    session: orm.Session,
    resident_id: int,
    *,
    title: str,
    lines: Sequence[str],
    key: str,
    link: str | None = None,
) -> Reach:
    """Queue a notice to one resident (see the module docstring); returns where it went: "group" (a card in the
    team's chat), "robot" (one-to-one) or "unreachable" (no DingTalk account: nothing queued)."""
    if not title.strip() or not lines:
        raise ApiError("validation_error", "通知须有标题和内容", status=422, field="lines")
    if session is not db.session():
        raise ValueError("notify_resident needs the app's session (workbench.db.session()): cards are queued in it")
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise ApiError("not_found", f"居民 {resident_id} 不存在", status=404)
    userid = resident.dingtalk_userid
    if not userid:
        return "unreachable"
    robot_key = _robot_key(key)
    card_id = out_track_id(key, userid)
    # Either channel already used for this key: the notice is out (a resident who joined the chat since a robot
    # message, or left it since a card, is not told twice).
    if session.get(BotCard, card_id) is not None:
        return "group"
    if session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == robot_key)) is not None:
        return "robot"

    team_id = _current_team(session, resident.id)
    conversation = _chat_for(session, team_id, userid)
    if conversation is not None and team_id is not None:
        data = {
            "title": title,
            "resident": privacy.mask_name(resident.name),
            "markdown": _markdown(lines, link),
            "link": link or "",
            "link_text": "查看详情" if link else "",
        }
        recipients = [userid, *(u for u in _staff_userids(session, team_id) if u != userid)]
        send_card(
            RESIDENT_NOTICE,
            data,
            out_track_id=card_id,
            group=conversation,
            at_userids={userid: resident.name},
            recipients=recipients,
        )
        log.info("resident notice queued", extra={"channel": "card"})
        return "group"

    enqueue_message(
        "robot_oto",
        messages.notice(title=title, lines=lines, link=link, link_text="查看详情"),
        idempotency_key=robot_key,
        to=[userid],
        db=session,
    )
    log.info("resident notice queued", extra={"channel": "robot_oto"})
    return "robot"


def message_resident(session: orm.Session, resident_id: int, message: dict, *, key: str) -> bool:
    """Queue a one-to-one robot message (`bot.messages.notice`/`markdown`/`text`) to a resident with a DingTalk
    account; False when they have none. The same `key` again queues nothing new (and says True)."""
    resident = session.get(Resident, resident_id)
    if resident is None:
        raise ApiError("not_found", f"居民 {resident_id} 不存在", status=404)
    if not resident.dingtalk_userid:
        return False
    # enqueue_message returns None when the same content already reached them today (the outbox's once-a-day
    # rule): delivered all the same.
    enqueue_message(
        "robot_oto", message, idempotency_key=_robot_key(key, "message"), to=[resident.dingtalk_userid], db=session
    )
    return True
