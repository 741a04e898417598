"""Who hears about a referral's transitions: `on_transition`, called by `service.apply_transition` after every
successful state change, queues everything in the same transaction (nothing goes out unless it commits).

- submit / resubmit: when the receiving side has a referral chat (`chats.chat_for`: the target department's, else
  the target institution's), ONE card (`cards.REFERRAL_CARD`) goes to that group, @-ing the target institution's
  referral coordinators and the named doctor who are in it; the receivers (`timers.receiving_side`) not in the
  group (`chats.covered`: the county's referral office, a family-doctor team outside the node …) still get the
  card one-to-one by the app's robot. Without a chat every receiver gets it one-to-one. All cards of a referral
  show the same data.
- Green channel (priority "green", up or lateral): the platform accepts at once (SYSTEM `auto_accept`), the cards
  (the group card too) go out already accepted and marked 绿色通道, and the receiving side gets an urgent notice:
  a work notice at the highest outbox priority plus a one-to-one robot message. DING (`/v1.0/robot/ding/send`)
  exists in the SDK but neither the reference (dingtalk.md) nor the sandbox covers it, so it is not used. Consent
  stays required for green referrals too: it is one tick on the form, not paperwork; the clinical summary and
  documents may follow (attachments can be added while the referral is shared).
- Every later transition: the cards are updated in place (state, who acted, the booked slot) by the job
  `sync_cards`, queued after commit because `update_card` calls DingTalk; cards of a referral that waits for
  nobody's decision any more are closed (claimed) so a late tap only gets the card back.
- The applicant doctor gets a work notice with the outcome on accept / auto_accept / schedule / reject / expire.
  No-shows are told by `timers.mark_no_shows` already, so not twice.
- schedule: the patient gets the appointment through `family_doctor.notices.notify_resident` when the referral
  has a resident; either way the outcome is audited (`referral.patient_notice`, ids and the channel only).
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import orm

from bot import messages, outbox
from bot.cards import refresh_card, send_card
from bot.models import BotCard
from mini_apps.referral import cards, chats, states
from mini_apps.referral.models import PRIORITIES, Referral, ReferralEvent
from org_sync.models import OrgMember, OrgNode
from workbench import audit, db, h5
from workbench.dingtalk.errors import DingTalkError
from workbench.privacy import mask_name
from workbench.queue import get_queue

log = logging.getLogger(__name__)

_PENDING = "referral.cards.sync"  # session.info: {referral_id: latest event id} to sync after commit
OUTCOMES = {
    "accept": "转诊已接收",
    "auto_accept": "绿色通道转诊已自动接收",
    "schedule": "转诊已预约",
    "reject": "转诊被退回",
    "expire": "转诊超时未接收",
}


def on_transition(session: orm.Session, referral: Referral, event: ReferralEvent) -> None:
    """Queue what this transition tells whom (see the module docstring), in the caller's transaction."""
    from mini_apps.referral import service

    action = event.action
    if action in ("submit", "resubmit"):
        if referral.priority == "green" and referral.direction != "down":
            # The platform accepts the emergency at once; auto_accept's own hook sends the cards.
            service.apply_transition(
                session, referral, "auto_accept", actor="system", member_id=None, side=states.SYSTEM, now=event.at
            )
            return
        _send_cards(session, referral, event)
        return
    if action == "auto_accept":
        _send_cards(session, referral, event, urgent=True)
        _urgent_notice(session, referral)
    elif _has_cards(session, referral):
        pending = session.info.setdefault(_PENDING, {})
        pending[referral.id] = max(pending.get(referral.id, 0), event.id)
    if action in OUTCOMES:
        _tell_applicant(session, referral, event)
    if action == "schedule":
        _tell_patient(session, referral)


# -- cards ----------------------------------------------------------------------------------------------------------


def _has_cards(session: orm.Session, referral: Referral) -> bool:
    return (
        session.scalar(
            sa.select(BotCard.out_track_id).where(BotCard.out_track_id.like(f"{cards.PREFIX}{referral.id}:%")).limit(1)
        )
        is not None
    )


def _send_cards(session: orm.Session, referral: Referral, event: ReferralEvent, *, urgent: bool = False) -> None:
    to = _receivers(session, referral)
    if not to:
        log.warning("referral card: nobody on the receiving side", extra={"referral_id": referral.id})
        return
    data = cards.card_data(session, referral)
    priority = "high" if urgent or referral.priority != "routine" else "normal"
    chat = chats.chat_for(session, referral)
    if chat is not None:
        inside = chats.covered(session, chat, to)
        send_card(
            cards.REFERRAL_CARD,
            data,
            out_track_id=cards.out_track_id(referral.id, event.id, cards.GROUP_TAIL + uuid.uuid4().hex[:15]),
            group=chat.open_conversation_id,
            at_userids=chats.mentions(session, referral, inside) or None,
            priority=priority,
        )
        if chats.out_of_step(session, chat):
            chats.schedule_sync(session, chat.node_id)
        in_group = set(inside)
        to = [userid for userid in to if userid not in in_group]
    for userid in to:
        send_card(
            cards.REFERRAL_CARD,
            data,
            out_track_id=cards.out_track_id(referral.id, event.id, uuid.uuid4().hex[:16]),
            userid=userid,
            priority=priority,
        )


def _receivers(session: orm.Session, referral: Referral) -> list[str]:
    from mini_apps.referral import timers

    return timers.receiving_side(session, referral)


@sa_event.listens_for(orm.Session, "after_commit")
def _queue_sync(session: orm.Session) -> None:
    """Update the cards only once the change they show is committed."""
    pending = session.info.pop(_PENDING, None)
    for referral_id, event_id in sorted((pending or {}).items()):
        get_queue().enqueue(sync_cards, referral_id, job_id=f"referral-cards-{referral_id}-{event_id}")


@sa_event.listens_for(orm.Session, "after_rollback")
def _forget_sync(session: orm.Session) -> None:
    session.info.pop(_PENDING, None)


def sync_cards(referral_id: int) -> int:
    """Job: bring every card of the referral to what it shows now (one metered update per card that differs);
    cards of an earlier round say the referral was resubmitted. A card not delivered yet gets the new data in
    its queued outbox row instead. Returns how many cards were updated at DingTalk."""
    session = db.session()
    referral = session.get(Referral, referral_id)
    if referral is None:
        return 0
    current = session.scalar(
        sa.select(sa.func.max(ReferralEvent.id)).where(
            ReferralEvent.referral_id == referral_id,
            ReferralEvent.action.in_(("submit", "resubmit", "auto_accept")),
        )
    )
    data = cards.card_data(session, referral)
    stale = {**data, "state": "已重新提交", "actionable": "false", "hint": "请处理新的转诊卡片", "respond_by": ""}
    rows = session.scalars(
        sa.select(BotCard)
        .where(BotCard.out_track_id.like(f"{cards.PREFIX}{referral_id}:%"))
        .order_by(BotCard.created_at)
    ).all()
    tracks = [(row.out_track_id, dict(row.data)) for row in rows]
    session.commit()
    updated = 0
    for track, shown in tracks:
        ids = cards.parse_track(track)
        if ids is None:
            continue
        want = data if ids[1] == current else stale
        try:
            updated += refresh_card(track, shown, want, closed_action="referral.closed")
        except DingTalkError as exc:
            log.info("referral card not updated", extra={"referral_id": referral_id, "status": exc.code})
    return updated


# -- notices --------------------------------------------------------------------------------------------------------


def _userid_of(session: orm.Session, member_id: int | None) -> str | None:
    if member_id is None:
        return None
    return session.scalar(
        sa.select(OrgMember.userid).where(
            OrgMember.id == member_id, OrgMember.deleted_at.is_(None), OrgMember.active.is_(True)
        )
    )


def _number(referral: Referral) -> str:
    return referral.referral_no or f"#{referral.id}"


def _target_name(session: orm.Session, referral: Referral) -> str:
    ids = [n for n in (referral.target_institution_id, referral.target_department_id) if n]
    names = {
        node_id: name
        for node_id, name in session.execute(sa.select(OrgNode.id, OrgNode.name).where(OrgNode.id.in_(ids)))
    }
    return " ".join(names[n] for n in ids if n in names)


def _tell_applicant(session: orm.Session, referral: Referral, event: ReferralEvent) -> None:
    """A work notice to the referring doctor: the outcome, masked patient, no ID number or diagnosis."""
    userid = _userid_of(session, referral.applicant_member_id)
    if userid is None:
        return
    lines = [
        f"转诊单号：{_number(referral)}",
        f"患者：{mask_name(referral.patient_name)}",
        f"接收方：{_target_name(session, referral)}",
    ]
    who = cards.last_action(session, referral)
    if who:
        lines.append(who)
    if event.action == "schedule" and (slot := cards.slot_text(session, referral)):
        lines.append(f"预约就诊：{slot}")
    if event.action == "reject" and event.reason:
        lines.append(f"退回原因：{event.reason}")
    if event.action == "expire":
        lines.append("可修改后重新提交，或联系转诊办")
    outbox.enqueue_message(
        "work_notice",
        messages.notice(
            title=OUTCOMES[event.action],
            lines=lines,
            link=h5.public_url(cards.DETAIL_URL.format(id=referral.id)),
            link_text="查看转诊",
        ),
        idempotency_key=f"referral:{referral.id}:outcome:{event.id}",
        to=[userid],
        priority="high" if referral.priority != "routine" else "normal",
        db=session,
    )


def _urgent_notice(session: orm.Session, referral: Referral) -> None:
    """Green channel: the receiving side is alerted at once, a work notice and a robot message, both high."""
    to = _receivers(session, referral)
    if not to:
        return
    title = "【绿色通道】急诊转诊已自动接收"
    lines = [
        f"转诊单号：{_number(referral)}（{PRIORITIES['green']}，{states.DIRECTIONS.get(referral.direction, '')}）",
        f"患者：{mask_name(referral.patient_name)}",
        f"接收科室：{_target_name(session, referral)}",
        "请立即做好接诊准备，病历资料可随后补充",
    ]
    notice = messages.notice(
        title=title, lines=lines, link=h5.public_url(cards.DETAIL_URL.format(id=referral.id)), link_text="查看转诊"
    )
    # A different text for the robot: the outbox sends the same content to a person once a day, across channels.
    chat = messages.text(f"{title}：{'；'.join(lines)}")
    for channel, message in (("work_notice", notice), ("robot_oto", chat)):
        outbox.enqueue_message(
            channel,
            message,
            idempotency_key=f"referral:{referral.id}:green:{channel}:{referral.submitted_at:%Y%m%d%H%M%S}",
            to=to,
            priority="high",
            db=session,
        )


def _tell_patient(session: orm.Session, referral: Referral) -> None:
    """The appointment to the patient in their family doctor's chat (or one-to-one); audited either way."""
    from mini_apps.family_doctor import notices

    reach = "no_resident"
    if referral.resident_id is not None:
        lines = [
            f"转诊医院：{_target_name(session, referral)}",
            f"就诊时间：{cards.slot_text(session, referral)}",
            f"转诊单号：{_number(referral)}",
            "请携带身份证、医保卡及既往病历按时就诊",
        ]
        reach = notices.notify_resident(
            session,
            referral.resident_id,
            title="转诊预约成功",
            lines=lines,
            key=f"referral:{referral.id}:appointment:{referral.slot_id}",
        )
    audit.record(
        None,
        "referral.patient_notice",
        resource_type="referral",
        resource_id=referral.id,
        node_id=referral.target_institution_id,
        detail={"resident_id": referral.resident_id, "reach": reach, "slot_id": referral.slot_id},
        session=session,
    )
