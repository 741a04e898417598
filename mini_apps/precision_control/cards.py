"""The task card (任务卡片) a doctor gets when a task is assigned to them, and its 接收 / 完成 buttons; the summary work
notice that replaces cards when one dispatch gives someone many tasks.

Who is told (`recipients`): the named doctor; with no doctor, the members of the task's family-doctor team; with
neither, the leaders of its institution (an institution may have hundreds of members, all of whom may work it from
the H5 list — the leaders hand it out). Only tasks in state `assigned` are announced.

- `send_task_card(session, task)`: one card per recipient, for a manual assignment (`dispatch.assign_task`) or a
  named-doctor dispatch of a single task.
- `send_assignment_notices(session, task_ids)`: after a dispatch. Set-based: a constant number of statements
  whatever the number of tasks (counts per recipient and campaign in SQL). A recipient given at most `CARD_CUTOFF`
  tasks of a campaign in the batch gets a card per task (they can accept and finish each from the chat); above
  that, ONE work notice per recipient and campaign (how many, how many urgent, the earliest due time) with a link
  to the H5 list filtered to the campaign — a team handed 300 persons reads one message, not 300 cards. `task_ids`
  may be a list or a SELECT of ids (for a whole campaign's dispatch, so no id list is built in Python).

Both only add to the caller's session (the outbox delivers after the caller commits); both skip what was already
sent for the same assignment (the card's out_track_id and the notice's idempotency key are derived from it), so a
retried dispatch sends nothing twice.

A card shows the person MASKED (masked name, category, priority, due time; never the ID number, phone or address),
the state, who acted and the key result. Every card of a task shows the same data (`card_data`).

Clicks (answered from the database alone, well inside DingTalk's 2 seconds): the clicker's userid becomes a
`Principal` (`load_principal`); 接收 calls `tasks.accept_task`, 完成 `tasks.complete_task` with the key result — the
template's first `choice` field, its value coming back as the button's `value` param (the card template renders one
完成 button per entry of `choices`, each with `{"value": <choice>}`). When the template has a required field other
than that one, the card cannot complete the task: `complete_on_card` is "false", the template shows 完成 as a link
to the H5 task page (`detail_url`), and a click that still arrives gets a hint to go there. Input fields on cards
are UNCONFIRMED (dingtalk.md §5.4 documents only the params configured on a button), so no free text is asked on a
card. A clicker who may not work the task gets a private hint (`KeepOpen`) and nothing changes.

Idempotent: `bot.cards.handle_click` claims the card first, so concurrent taps run one handler; the task's own
conditional UPDATE (`tasks._step`) decides a race with the H5 page or a colleague's card, and the loser's card shows
who acted. 接收 leaves the card open (the claim is released) so that 完成 can follow on the same card; a finished task
keeps its cards closed. Whatever moves a task with cards out there (a click, the H5 page, a re-assignment) queues
`sync_cards` after commit, which brings every card of the task to what `card_data` shows now.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import orm

from bot import messages, outbox
from bot.cards import (
    Button,
    CardClick,
    CardTemplate,
    KeepOpen,
    card_action,
    declare_card,
    refresh_card,
    send_card,
)
from bot.models import BotCard, OutboxMessage
from mini_apps.family_doctor.models import FamilyDoctorTeam, TeamMember
from mini_apps.family_doctor.service import CHINA
from mini_apps.precision_control.models import (
    PRIORITIES,
    TASK_STATES,
    WORKING_STATES,
    Campaign,
    CampaignPerson,
    ControlTask,
    ControlTaskEvent,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from workbench import db, h5
from workbench.auth.principal import actor_names, load_principal
from workbench.db import utcnow
from workbench.dingtalk.errors import DingTalkError
from workbench.errors import ApiError
from workbench.queue import get_queue

log = logging.getLogger(__name__)

PREFIX = "control:"
LIST_URL = "/h5/apps/precision_control/"
DETAIL_URL = "/h5/apps/precision_control/tasks/{id}"
# A recipient given more tasks of one campaign than this in one batch gets one summary notice instead of cards.
CARD_CUTOFF = 3
CHUNK = 5000  # ids per IN list when a caller passes a Python list
VALUE_LIMIT = 300  # characters of a card value (DingTalk caps one at 1 KB)
NOT_YOURS = "该任务不由您承办，不能在卡片上办理"
# Event actions that change what a card shows (escalation and reminders do not).
SHOWN_ACTIONS = ("accept", "start", "complete", "unreachable", "transfer", "close", "assign", "reassign", "refuse")
ACTED = {
    "accept": "接收",
    "start": "开始处理",
    "complete": "完成",
    "unreachable": "标记无法联系",
    "transfer": "转出",
    "close": "关闭",
    "reassign": "改派",
    "refuse": "退回县级",
}
_PENDING = "precision_control.cards.sync"  # session.info: task ids whose cards to sync after commit

TASK_CARD = declare_card(
    CardTemplate(
        name="precision_control.task",
        template_id="tpl-control-task",
        params=(
            "title",
            "campaign",
            "person",  # masked name only
            "category",
            "priority",
            "due",
            "assignee",
            "state",
            "acted_by",
            "result",
            "key_label",  # the key result's label (检测结果 …)
            "choices",  # its choices joined by "|": one 完成 button each, with params {"value": choice}
            "complete_on_card",  # "false": 完成 opens the H5 task page instead
            "actionable",  # "true" shows the buttons
            "hint",
            "detail_url",
        ),
        buttons=(Button("control.accept", "接收"), Button("control.complete", "完成")),
    )
)


# -- the key result ---------------------------------------------------------------------------------------------


def key_field(template: Mapping[str, Any]) -> dict[str, Any] | None:
    """The template's key result: its first `choice` field (None when it has none)."""
    return next((dict(f) for f in template.get("fields", []) if f.get("type") == "choice"), None)


def completes_on_card(template: Mapping[str, Any]) -> bool:
    """Whether the key result alone is a valid result: no other field is required."""
    key = key_field(template)
    return key is not None and all(
        f["code"] == key["code"] or not f.get("required") for f in template.get("fields", [])
    )


# -- what a card shows ------------------------------------------------------------------------------------------


def out_track_id(task: ControlTask, userid: str) -> str:
    """`control:<task>:<assigned at, µs>:<member or tail>` (≤64): one card per recipient and assignment, the same
    again for the same assignment (so a retried send is recognised), a new one after a re-assignment."""
    stamp = task.assigned_at.strftime("%y%m%d%H%M%S%f") if task.assigned_at else "0"
    tail = uuid.uuid5(uuid.NAMESPACE_OID, userid).hex[:12]  # userids may be long or contain ':'
    return f"{PREFIX}{task.id}:{stamp}:{tail}"


def parse_track(track: str) -> int | None:
    """The task id of a task card, None for other cards."""
    if not track.startswith(PREFIX):
        return None
    try:
        return int(track.removeprefix(PREFIX).split(":", 1)[0])
    except ValueError:
        return None


def _local(at: datetime) -> str:
    return at.astimezone(CHINA).strftime("%m-%d %H:%M")


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 1] + "…"


def cards_data(session: orm.Session, task_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """What every card of each task shows now, by task id — a constant number of queries for the lot."""
    if not task_ids:
        return {}
    rows = session.execute(
        sa.select(ControlTask, CampaignPerson, Campaign, OrgMember.name, FamilyDoctorTeam.name, OrgNode.name)
        .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
        .join(Campaign, Campaign.id == ControlTask.campaign_id)
        .outerjoin(OrgMember, OrgMember.id == ControlTask.member_id)
        .outerjoin(FamilyDoctorTeam, FamilyDoctorTeam.id == ControlTask.team_id)
        .outerjoin(OrgNode, OrgNode.id == ControlTask.institution_id)
        .where(ControlTask.id.in_(task_ids))
    ).all()
    last_ids = sa.select(sa.func.max(ControlTaskEvent.id)).where(
        ControlTaskEvent.task_id.in_(task_ids), ControlTaskEvent.action.in_(list(ACTED))
    )
    last = {
        event.task_id: event
        for event in session.scalars(
            sa.select(ControlTaskEvent).where(
                ControlTaskEvent.id.in_(last_ids.group_by(ControlTaskEvent.task_id).scalar_subquery())
            )
        )
    }
    names = actor_names(session, {event.actor for event in last.values()})
    now = utcnow()
    out: dict[int, dict[str, str]] = {}
    for task, person, campaign, member_name, team_name, institution_name in rows:
        key = key_field(campaign.task_template) or {}
        actionable = task.state in WORKING_STATES and campaign.state == "active"
        due = ""
        if task.due_at is not None:
            due = f"{_local(task.due_at)} 前完成"
            if task.state in WORKING_STATES and task.due_at < now:
                due += "（已逾期）"
        event = last.get(task.id)
        acted_by = f"已由{names.get(event.actor, '管理员')}{ACTED[event.action]}" if event is not None else ""
        result = ""
        if task.state == "completed" and task.result:
            value = task.result.get(key.get("code", ""), "")
            result = f"{key.get('label', '结果')}：{value}" if value != "" else "已提交结果"
            if task.positive:
                result += "（阳性）"
        out[task.id] = {
            "title": f"{'【紧急】' if person.priority == 'urgent' else ''}精密智控任务",
            "campaign": _cut(campaign.name),
            "person": person.name_masked or "（已匿名）",
            "category": person.category,
            "priority": PRIORITIES.get(person.priority, person.priority),
            "due": due,
            "assignee": member_name or team_name or institution_name or "",
            "state": TASK_STATES.get(task.state, task.state),
            "acted_by": acted_by,
            "result": result,
            "key_label": key.get("label", ""),
            "choices": "|".join(str(c) for c in key.get("choices", [])),
            "complete_on_card": "true" if completes_on_card(campaign.task_template) else "false",
            "actionable": "true" if actionable else "false",
            "hint": "",
            "detail_url": h5.public_url(DETAIL_URL.format(id=task.id)),
        }
    return out


def card_data(session: orm.Session, task: ControlTask) -> dict[str, str]:
    return cards_data(session, [task.id])[task.id]


# -- who is told ------------------------------------------------------------------------------------------------


def _live(select: sa.Select) -> sa.Select:
    return select.where(OrgMember.deleted_at.is_(None), OrgMember.active.is_(True), OrgMember.userid.is_not(None))


def _recipient_pairs(ids: sa.ColumnElement[bool]) -> sa.Select:
    """(task_id, campaign_id, person_id, due_at, userid) for every recipient of the assigned tasks matching `ids`."""
    t = ControlTask
    base = (t.state == "assigned", ids)
    cols = (t.id.label("task_id"), t.campaign_id, t.person_id, t.due_at, OrgMember.userid)
    named = _live(sa.select(*cols).join(OrgMember, OrgMember.id == t.member_id).where(*base))
    team = _live(
        sa.select(*cols)
        .join(TeamMember, TeamMember.team_id == t.team_id)
        .join(OrgMember, OrgMember.id == TeamMember.member_id)
        .where(*base, t.member_id.is_(None))
    )
    leaders = _live(
        sa.select(*cols)
        .join(OrgMembership, sa.and_(OrgMembership.node_id == t.institution_id, OrgMembership.is_leader.is_(True)))
        .join(OrgMember, OrgMember.id == OrgMembership.member_id)
        .where(*base, t.member_id.is_(None), t.team_id.is_(None))
    )
    return sa.union(named, team, leaders)


def recipients(session: orm.Session, task: ControlTask) -> list[str]:
    """Userids told about this task (see the module docstring), sorted."""
    pairs = _recipient_pairs(ControlTask.id == task.id).subquery()
    return sorted(set(session.scalars(sa.select(pairs.c.userid))))


def _send(session: orm.Session, tasks_by_id: Mapping[int, ControlTask], pairs: Iterable[tuple[int, str]]) -> int:
    """Queue one card per (task, userid) not sent before; returns how many were queued."""
    wanted = {out_track_id(tasks_by_id[task_id], userid): (task_id, userid) for task_id, userid in pairs}
    if not wanted:
        return 0
    sent = set(session.scalars(sa.select(BotCard.out_track_id).where(BotCard.out_track_id.in_(list(wanted)))))
    todo = {track: pair for track, pair in wanted.items() if track not in sent}
    data = cards_data(session, sorted({task_id for task_id, _ in todo.values()}))
    for track, (task_id, userid) in sorted(todo.items()):
        shown = data[task_id]
        send_card(
            TASK_CARD,
            shown,
            out_track_id=track,
            userid=userid,
            priority="high" if shown["title"].startswith("【紧急】") else "normal",
        )
    return len(todo)


def send_task_card(session: orm.Session, task: ControlTask) -> int:
    """A card per recipient of this assigned task (none when it is not `assigned`). Adds to the caller's session;
    the caller commits. Returns how many cards were queued."""
    to = recipients(session, task) if task.state == "assigned" else []
    return _send(session, {task.id: task}, [(task.id, userid) for userid in to])


def _id_clauses(task_ids: Sequence[int] | sa.Select) -> list[sa.ColumnElement[bool]]:
    if isinstance(task_ids, sa.Select):
        return [ControlTask.id.in_(task_ids.scalar_subquery())]
    ids = sorted(set(task_ids))
    return [ControlTask.id.in_(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


def send_assignment_notices(session: orm.Session, task_ids: Sequence[int] | sa.Select) -> dict[str, int]:
    """After a dispatch: cards for recipients of at most `CARD_CUTOFF` tasks per campaign, one summary work notice
    per recipient and campaign above that (module docstring). Adds to the caller's session; the caller commits.
    Returns {"cards": queued, "notices": queued, "recipients": people told}."""
    session.flush()
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for clause in _id_clauses(task_ids):
        pairs = _recipient_pairs(clause).subquery()
        for userid, campaign_id, n, n_urgent, first_due, low, high in session.execute(
            sa.select(
                pairs.c.userid,
                pairs.c.campaign_id,
                sa.func.count(),
                sa.func.sum(sa.case((CampaignPerson.priority == "urgent", 1), else_=0)),
                sa.func.min(pairs.c.due_at),
                sa.func.min(pairs.c.task_id),
                sa.func.max(pairs.c.task_id),
            )
            .select_from(pairs)
            .join(CampaignPerson, CampaignPerson.id == pairs.c.person_id)
            .group_by(pairs.c.userid, pairs.c.campaign_id)
        ):
            group = groups.setdefault(
                (userid, campaign_id), {"n": 0, "urgent": 0, "due": None, "low": low, "high": high}
            )
            group["n"] += n
            group["urgent"] += int(n_urgent or 0)
            if first_due is not None and (group["due"] is None or first_due < group["due"]):
                group["due"] = first_due
            group["low"], group["high"] = min(group["low"], low), max(group["high"], high)

    few = {key for key, group in groups.items() if group["n"] <= CARD_CUTOFF}
    cards = 0
    if few:
        few_users = sorted({userid for userid, _ in few})
        card_pairs: list[tuple[int, str]] = []
        for clause in _id_clauses(task_ids):
            pairs = _recipient_pairs(clause).subquery()
            for task_id, campaign_id, userid in session.execute(
                sa.select(pairs.c.task_id, pairs.c.campaign_id, pairs.c.userid).where(pairs.c.userid.in_(few_users))
            ):
                if (userid, campaign_id) in few:
                    card_pairs.append((task_id, userid))
        task_rows = session.scalars(
            sa.select(ControlTask).where(ControlTask.id.in_(sorted({t for t, _ in card_pairs})))
        ).all()
        cards = _send(session, {task.id: task for task in task_rows}, card_pairs)

    many = {key: group for key, group in groups.items() if key not in few}
    names = dict(
        session.execute(sa.select(Campaign.id, Campaign.name).where(Campaign.id.in_({c for _, c in many}))).all()
    )
    # The same batch again (a retried dispatch) has the same keys: queued once.
    keys = {
        (userid, campaign_id): f"control:assigned:{campaign_id}:{g['low']}-{g['high']}-{g['n']}:{userid}"[:128]
        for (userid, campaign_id), g in many.items()
    }
    queued = set(
        session.scalars(
            sa.select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.in_(keys.values()))
        )
    )
    notices = 0
    for (userid, campaign_id), group in sorted(many.items()):
        if keys[(userid, campaign_id)] in queued:
            continue
        lines = [f"专项：{names.get(campaign_id, '')}", f"新分派任务：{group['n']} 项"]
        if group["urgent"]:
            lines.append(f"其中紧急：{group['urgent']} 项")
        if group["due"] is not None:
            lines.append(f"最早截止：{_local(group['due'])}")
        lines.append("请在任务列表中逐项接收、处置")
        row = outbox.enqueue_message(
            "work_notice",
            messages.notice(
                title="您有新的精密智控任务",
                lines=lines,
                link=h5.public_url(f"{LIST_URL}?campaign_id={campaign_id}&filter=assigned"),
                link_text="打开任务列表",
            ),
            idempotency_key=keys[(userid, campaign_id)],
            to=[userid],
            priority="high" if group["urgent"] else "normal",
            db=session,
        )
        notices += row is not None  # None: the same text already reached them today
    log.info("task assignments announced", extra={"rows": cards + notices, "result": "ok"})
    return {"cards": cards, "notices": notices, "recipients": len({userid for userid, _ in groups})}


# -- clicks -----------------------------------------------------------------------------------------------------


def _member_id(session: orm.Session, userid: str) -> int | None:
    return session.scalar(
        sa.select(OrgMember.id)
        .where(OrgMember.userid == userid, OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
        .order_by(OrgMember.id)
        .limit(1)
    )


def _reopen(session: orm.Session, track: str) -> None:
    """Undo `handle_click`'s claim while the task is still open: 完成 may follow 接收 on the same card."""
    session.execute(
        sa.update(BotCard)
        .where(BotCard.out_track_id == track)
        .values(acted_by=None, action_id=None, acted_at=None)
        .execution_options(synchronize_session=False)
    )


def _answer(session: orm.Session, task_id: int, track: str) -> dict[str, str]:
    task = session.get(ControlTask, task_id, populate_existing=True)
    if task.state in WORKING_STATES:
        _reopen(session, track)
    return card_data(session, task)


def _act(click: CardClick, action: str) -> Mapping[str, str]:
    from mini_apps.precision_control import tasks

    task_id = parse_track(click.out_track_id)
    if task_id is None:
        return {}
    session = db.session()
    task = session.get(ControlTask, task_id)
    if task is None:
        return {"state": "任务不存在", "actionable": "false"}
    if task.state not in WORKING_STATES or (action == "accept" and task.state != "assigned"):
        # Already moved on (another card, the H5 page, a double tap): the card shows where it stands.
        return _answer(session, task_id, click.out_track_id)
    member_id = _member_id(session, click.userid)
    principal = load_principal(session, member_id) if member_id is not None else None
    if principal is None or not tasks.may_work(session, principal, task):
        raise KeepOpen({"hint": NOT_YOURS})
    body: dict[str, Any] = {}
    if action == "complete":
        template = session.scalar(sa.select(Campaign.task_template).where(Campaign.id == task.campaign_id))
        key = key_field(template)
        if key is None or not completes_on_card(template):
            raise KeepOpen({"hint": "该任务须填写多项结果：请点「查看详情」在任务页面提交"})
        value = str(click.params.get("value") or "").strip()
        if not value:
            raise KeepOpen({"hint": f"请选择{key['label']}后完成"})
        body = {"result": {key["code"]: value}}
    try:
        if action == "accept":
            tasks.accept_task(session, principal, task_id)
        else:
            tasks.complete_task(session, principal, task_id, body)
    except ApiError as exc:
        if exc.status == 409:
            # Someone else moved it first: nothing changes here; the card shows who.
            log.info("task card click after another step", extra={"action": action, "card": click.out_track_id})
            return _answer(session, task_id, click.out_track_id)
        if exc.status in (403, 404):
            raise KeepOpen({"hint": NOT_YOURS}) from exc
        if exc.status == 422:
            raise KeepOpen({"hint": exc.message}) from exc
        raise
    return _answer(session, task_id, click.out_track_id)


@card_action("control.accept")
def accept_by_card(click: CardClick) -> Mapping[str, Any]:
    return _act(click, "accept")


@card_action("control.complete")
def complete_by_card(click: CardClick) -> Mapping[str, Any]:
    return _act(click, "complete")


# -- keeping every card of a task in step -----------------------------------------------------------------------


@sa_event.listens_for(orm.Session, "after_flush")
def _note_changes(session: orm.Session, flush_context: Any) -> None:
    """Tasks with cards whose shown data a new event changes, to sync after commit (one query per 100 tasks, and
    only for the steps a card shows: bulk flows such as escalation add none)."""
    ids = sorted(
        {obj.task_id for obj in session.new if isinstance(obj, ControlTaskEvent) and obj.action in SHOWN_ACTIONS}
    )
    if not ids:
        return
    found: set[int] = set()
    for i in range(0, len(ids), 100):
        likes = [BotCard.out_track_id.like(f"{PREFIX}{task_id}:%") for task_id in ids[i : i + 100]]
        tracks = session.connection().execute(sa.select(BotCard.out_track_id).where(sa.or_(*likes))).scalars()
        found |= {task_id for track in tracks if (task_id := parse_track(track)) is not None}
    if found:
        session.info.setdefault(_PENDING, set()).update(found)


@sa_event.listens_for(orm.Session, "after_commit")
def _queue_sync(session: orm.Session) -> None:
    pending = session.info.pop(_PENDING, None)
    for task_id in sorted(pending or ()):
        get_queue().enqueue(sync_cards, task_id, job_id=f"control-cards-{task_id}-{uuid.uuid4().hex[:12]}")


@sa_event.listens_for(orm.Session, "after_rollback")
def _forget_sync(session: orm.Session) -> None:
    session.info.pop(_PENDING, None)


def sync_cards(task_id: int) -> int:
    """Job: bring every card of the task to what it shows now (one metered update per card that differs); cards of
    a finished task are closed so a late tap only gets the card back. A card not delivered yet gets the new data in
    its queued outbox row instead. Returns how many cards were updated at DingTalk."""
    session = db.session()
    task = session.get(ControlTask, task_id)
    if task is None:
        return 0
    data = card_data(session, task)
    rows = session.scalars(
        sa.select(BotCard).where(BotCard.out_track_id.like(f"{PREFIX}{task_id}:%")).order_by(BotCard.created_at)
    ).all()
    tracks = [(row.out_track_id, dict(row.data)) for row in rows]
    session.commit()
    updated = 0
    want = {key: value for key, value in data.items() if key != "hint"}
    for track, shown in tracks:
        try:
            updated += refresh_card(track, shown, want, closed_action="control.closed")
        except DingTalkError as exc:
            log.info("task card not updated", extra={"card": track, "status": exc.code})
    return updated


def init_app(app: Flask) -> None:
    # The card and its handlers register when this module is imported (`declare_card`, `card_action`).
    pass
