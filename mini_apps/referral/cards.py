"""The referral card the receiving side gets (one card in the receiving department's group chat, `chats`, and
one-to-one robot cards for the receivers outside it) and its 接收 / 退回 buttons.

Every card of a referral shows the same data (`card_data`), so a change is one `update_card` per card and everyone
sees the same state, who acted and the booked slot. A click is answered from the database alone, well inside
DingTalk's 2 seconds: `bot.cards.handle_click` has already claimed the clicked card; the handler checks that the
person is on the receiving side (the rules of `service`) and moves the referral with `service.apply_transition`,
whose conditional UPDATE decides a race with a colleague's card or the H5 page — the loser's card shows who acted.
A group card is seen by every member of the group: a member who is not on the receiving side is refused and
nothing changes. The refusal's hint goes to the person who tapped alone (`bot.cards.KeepOpen` answers with
`userPrivateData`).

退回 needs a reason. The reference (dingtalk.md §5.4) documents only the `params` configured on a button coming back
with a click, not input fields on cards, so a reason typed on the card is UNCONFIRMED: when the click carries a
`reason` param (a template with an input bound to it) the referral is rejected at once; otherwise the click changes
nothing, the card stays open and tells the person to reject on the H5 referral page (`detail_url`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from bot.cards import Button, CardClick, CardTemplate, KeepOpen, card_action, declare_card
from mini_apps.family_doctor import service as family_doctor
from mini_apps.referral import states
from mini_apps.referral.models import HALF_DAYS, MODES, PRIORITIES, REASONS, Referral, ReferralEvent, ReferralSlot
from org_sync.models import OrgMember, OrgNode
from workbench import db, h5, privacy
from workbench.auth.principal import load_principal
from workbench.errors import ApiError

log = logging.getLogger(__name__)

PREFIX = "referral:"
DETAIL_URL = "/h5/apps/referral/referrals/{id}"  # the H5 referral page (where a reason is typed, documents are read)
SLOT_DAYS = 7  # a card 接收 books the earliest free place within this many days
VALUE_LIMIT = 300  # characters of free text on a card (DingTalk caps a value at 1 KB)

REFERRAL_CARD = declare_card(
    CardTemplate(
        name="referral.request",
        template_id="tpl-referral-request",
        params=(
            "title",
            "referral_no",
            "priority",
            "patient",
            "diagnosis",
            "reason",
            "applicant",
            "target",
            "state",
            "acted_by",
            "slot",
            "respond_by",
            "actionable",  # "true" shows the buttons
            "hint",
            "detail_url",
        ),
        buttons=(Button("referral.accept", "接收"), Button("referral.reject", "退回")),
    )
)

GROUP_TAIL = "g"  # out_track_id tails of group cards start with it (told apart in the sandbox and logs)
NOT_RECEIVER = "您不是该转诊的接收方，不能办理"

HALF_DAY_ENDS = {"am": 12, "pm": 18}  # China time: a half-day already over today is not offered


def out_track_id(referral_id: int, round_id: int, tail: str) -> str:
    """`referral:<id>:<round>:<tail>` (≤64): the round is the submit event the card was sent for (a resubmitted
    referral gets new cards), the random tail keeps it unique at DingTalk across databases."""
    return f"{PREFIX}{referral_id}:{round_id}:{tail}"


def parse_track(track: str) -> tuple[int, int] | None:
    """(referral id, round) of a referral card, None for other cards."""
    if not track.startswith(PREFIX):
        return None
    try:
        referral_id, round_id, _tail = track.removeprefix(PREFIX).split(":")
        return int(referral_id), int(round_id)
    except ValueError:
        return None


def _local(at: datetime) -> str:
    return at.astimezone(family_doctor.CHINA).strftime("%m-%d %H:%M")


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 1] + "…"


def _age(referral: Referral) -> int:
    born, on = referral.patient_birth_date, family_doctor.today()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def last_action(session: orm.Session, referral: Referral) -> str:
    """ "已由张三接收" for the latest transition after submission ("系统" for the platform)."""
    rows = session.execute(
        sa.select(ReferralEvent.action, ReferralEvent.member_id, OrgMember.name)
        .outerjoin(OrgMember, OrgMember.id == ReferralEvent.member_id)
        .where(ReferralEvent.referral_id == referral.id, ReferralEvent.action.not_in(("create", "submit", "resubmit")))
        .order_by(ReferralEvent.id.desc())
        .limit(2)
    ).all()
    if not rows:
        return ""
    action, member_id, name = rows[0]
    move = states.moves_for(referral.direction).get(action)
    label = move.label if move else action
    if action == "schedule" and len(rows) > 1 and rows[1][0] == "accept" and rows[1][1] == member_id:
        label = "接收并预约"  # one decision on the card or the page: accept with a slot
    return f"已由{name or '系统'}{label}"


def slot_text(session: orm.Session, referral: Referral) -> str:
    slot = session.get(ReferralSlot, referral.slot_id) if referral.slot_id is not None else None
    return f"{slot.day.isoformat()} {HALF_DAYS.get(slot.half_day, slot.half_day)}" if slot else ""


def card_data(session: orm.Session, referral: Referral) -> dict[str, str]:
    """What every card of the referral shows now: the patient masked, no ID number or phone."""
    names = {
        node.id: node.name
        for node in session.scalars(
            sa.select(OrgNode).where(
                OrgNode.id.in_(
                    [
                        n
                        for n in (
                            referral.applicant_institution_id,
                            referral.applicant_department_id,
                            referral.target_institution_id,
                            referral.target_department_id,
                        )
                        if n
                    ]
                )
            )
        )
    }
    priority = PRIORITIES.get(referral.priority, referral.priority)
    direction = states.DIRECTIONS.get(referral.direction, referral.direction)
    sex = {"M": "男", "F": "女"}.get(referral.patient_sex, "")
    diagnosis = f"{referral.primary_diagnosis_code} {referral.primary_diagnosis_name}"
    if referral.secondary_diagnoses:
        diagnosis += "；" + "、".join(d.get("name", "") for d in referral.secondary_diagnoses)
    reason = REASONS.get(referral.reason_code, referral.reason_code)
    if referral.reason_text:
        reason += f"：{referral.reason_text}"
    actionable = referral.state == "submitted"
    state = states.STATES.get(referral.state, referral.state)
    if referral.priority == "green" and referral.accepted_at is not None:
        state += "（绿色通道）"
    return {
        "title": f"{'【绿色通道】' if referral.priority == 'green' else ''}{direction}申请 · "
        f"{MODES.get(referral.mode, referral.mode)}",
        "referral_no": referral.referral_no or f"#{referral.id}",
        "priority": priority,
        "patient": f"{privacy.mask_name(referral.patient_name)} {sex} {_age(referral)}岁".replace("  ", " "),
        "diagnosis": _cut(diagnosis),
        "reason": _cut(reason),
        "applicant": " ".join(
            names[n] for n in (referral.applicant_institution_id, referral.applicant_department_id) if n in names
        ),
        "target": " ".join(
            names[n] for n in (referral.target_institution_id, referral.target_department_id) if n in names
        ),
        "state": state,
        "acted_by": last_action(session, referral),
        "slot": slot_text(session, referral),
        "respond_by": f"请于 {_local(referral.respond_by)} 前处理" if actionable and referral.respond_by else "",
        "actionable": "true" if actionable else "false",
        "hint": "",
        "detail_url": h5.public_url(DETAIL_URL.format(id=referral.id)),
    }


# -- clicks ---------------------------------------------------------------------------------------------------------


def _member_id(session: orm.Session, userid: str) -> int | None:
    return session.scalar(
        sa.select(OrgMember.id)
        .where(OrgMember.userid == userid, OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
        .order_by(OrgMember.id)
        .limit(1)
    )


def _free_slots(session: orm.Session, department_id: int, now: datetime) -> list[ReferralSlot]:
    """The department's published slots with free places in the next `SLOT_DAYS` days, earliest first; today's
    half-days already over are left out."""
    local = now.astimezone(family_doctor.CHINA)
    today = local.date()
    rows = session.scalars(
        sa.select(ReferralSlot)
        .where(
            ReferralSlot.department_id == department_id,
            ReferralSlot.day.between(today, today + timedelta(days=SLOT_DAYS - 1)),
            ReferralSlot.booked < ReferralSlot.capacity,
        )
        .order_by(ReferralSlot.day, ReferralSlot.half_day)  # "am" < "pm"
    ).all()
    return [s for s in rows if s.day > today or local.hour < HALF_DAY_ENDS.get(s.half_day, 24)]


def _book_earliest(session: orm.Session, referral: Referral, now: datetime) -> ReferralSlot | None:
    from mini_apps.referral import slots

    if referral.target_department_id is None or referral.direction == "down":
        return None
    for candidate in _free_slots(session, referral.target_department_id, now):
        try:
            return slots.book(session, candidate.department_id, candidate.day, candidate.half_day)
        except ApiError:
            continue  # taken meanwhile (a conditional UPDATE that changed nothing): try the next half-day
    return None


def _act(click: CardClick, action: str) -> Mapping[str, str]:
    from mini_apps.referral import service

    ids = parse_track(click.out_track_id)
    if ids is None:
        return {}
    session = db.session()
    member_id = _member_id(session, click.userid)
    principal = load_principal(session, member_id) if member_id is not None else None
    referral = session.get(Referral, ids[0])
    if referral is None:
        return {"state": "转诊不存在", "actionable": "false"}
    found: set[str] = set()
    if principal is not None:
        try:
            _, _, found = service.visible_referral(session, principal, referral.id)
        except ApiError:
            found = set()
    if states.RECEIVER not in found:
        raise KeepOpen({"hint": NOT_RECEIVER})
    reason = str(click.params.get("reason") or "").strip()
    if action == "reject" and not reason:
        raise KeepOpen({"hint": "退回须填写原因：请点「查看详情」在转诊页面退回"})
    assert principal is not None
    try:
        event = service.apply_transition(
            session,
            referral,
            action,
            actor=principal.actor,
            member_id=principal.member_id,
            side=states.RECEIVER,
            reason=reason,
        )
        if action == "accept" and (slot := _book_earliest(session, referral, event.at)) is not None:
            referral.slot_id = slot.id
            service.apply_transition(
                session,
                referral,
                "schedule",
                actor=principal.actor,
                member_id=principal.member_id,
                side=states.RECEIVER,
            )
    except ApiError as exc:
        if exc.code not in ("conflict", "illegal_transition"):
            raise
        # Someone acted first (another card, the H5 page): this card shows who; nothing changes.
        session.refresh(referral)
        log.info("referral card click after another decision", extra={"result": {"referral_id": referral.id}})
    return card_data(session, referral)


@card_action("referral.accept")
def accept_by_card(click: CardClick) -> Mapping[str, Any]:
    return _act(click, "accept")


@card_action("referral.reject")
def reject_by_card(click: CardClick) -> Mapping[str, Any]:
    return _act(click, "reject")
