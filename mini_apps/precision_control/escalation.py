"""Reminders before due and overdue escalation (逾期督办) of 精密智控 tasks, as grouped messages — never one per task.

One periodic job (`run`, every 15 minutes) does both for every `active` campaign (a draft or ended one neither
reminds nor escalates), each part of each campaign in its own transaction: the queued messages (outbox), the
`ControlNotice` rows and the task updates commit together or not at all, so a crash never sends without marking
nor marks without sending.

Reminders (`remind`). A task someone has to do (assigned, accepted, in progress) whose due time falls within the
campaign's `remind_before_hours` and that was never reminded is reminded once, ever (`reminded_at`). Per campaign
and run, ONE message per recipient lists their tasks (how many, the first few with masked names and due times,
a link to the doctors' list):
- a named doctor: a work notice to them;
- a family-doctor team without a doctor: the team's signed-doctor chat when it exists — residents are members of
  that chat, so the message there carries counts and due times only, no person lines — else a work notice to the
  team's members;
- an institution only: the chat of the nearest `AlertRoute` at or above the institution, @-ing its people; with
  none, nobody (logged and counted as unreached; the task is still marked, so it is not looked at every 15
  minutes for ever — the escalation reaches someone once it is overdue).

Escalation (`escalate`), Alertmanager-like. An open task (queued ones too) overdue by at least
`escalation_hours[i]` reaches level i + 1: 1 the institution, 2 the medical community (the nearest
medical-community lead at or above the institution), 3 the county (the task's county). A queued task has no
institution: its county answers at every level (the campaign's owner when it has no county either). Levels only
go up — a task that finishes simply drops out of every group; raising the thresholds of a running campaign does not
de-escalate anyone. The level moves are one set-based UPDATE per campaign and level, highest first (a task
overdue for days jumps straight to the county with one step), each preceded by its INSERT … SELECT of
`ControlTaskEvent(action="escalate")` rows.

Then the tasks are grouped by the chat responsible at their CURRENT level: the nearest `AlertRoute` at or above
the responsible unit (routes inherit down the tree, as `supervision.alerts` routes alerts; two routes naming the
same chat are one chat). ONE message per chat
and campaign — a chat answering at two levels at once (a lead hospital's chat that also serves its member
institutions without their own route) gets one message with a section per level — with a line per unit
(institution, or a county's queue): how many tasks are overdue and the oldest due time; the route's people @-ed
in the text; a link to the campaign's dashboard at the chat's node. When a chat is told:
- its first message for the campaign goes at once;
- the same overdue tasks again only after the campaign's `repeat_interval_hours` (Alertmanager's
  repeat_interval), measured from the last `ControlNotice` (campaign, escalation, chat);
- tasks newly reaching a level in that chat go out at the next run even inside the repeat interval — escalation
  is news the level above needs now, not tomorrow — but no more often than once per `GROUP_INTERVAL` per chat
  (Alertmanager's group_interval), so tasks trickling in do not ping a chat every 15 minutes. Such a message
  carries the whole group (new units marked), and restarts the repeat interval, as Alertmanager's does.
A group too long for one message is split, still grouped, numbered (1/n). Idempotency keys are stable per (chat's
node, campaign, level, 15-minute slot): a job retried or run twice in the same slot queues nothing twice.

A constant number of statements per campaign whatever its size (100,000+ tasks): the reminder list is read with a
window function (a few rows per recipient), the escalation groups by one GROUP BY per campaign.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm

from bot import messages, outbox
from mini_apps.family_doctor.models import TeamMember
from mini_apps.precision_control.dispatch import _json_object
from mini_apps.precision_control.models import (
    OPEN_STATES,
    WORKING_STATES,
    Campaign,
    CampaignPerson,
    ControlNotice,
    ControlTask,
    ControlTaskEvent,
)
from org_sync.models import OrgMember, OrgNode, path_ids
from supervision.alerts import route_for, routes_by_node
from supervision.models import AlertRoute
from workbench import audit, db
from workbench.db import utcnow
from workbench.errors import ApiError
from workbench.h5 import public_url

log = logging.getLogger(__name__)

JOB_SECONDS = 15 * 60
SLOT = timedelta(seconds=JOB_SECONDS)  # what idempotency keys are stable within
GROUP_INTERVAL = timedelta(hours=1)  # at most this often per chat for tasks newly reaching it
SYSTEM_ACTOR = "system:escalation"
CHINA = ZoneInfo("Asia/Shanghai")
LEVELS = {1: "机构", 2: "医共体", 3: "县级"}
# DingTalk refuses markdown above 20,000 bytes; the outbox caps group-robot messages lower still. Keep a margin for
# the @mentions `messages.markdown` appends (as supervision.alerts does).
MESSAGE_BYTES = min(18_000, outbox.MESSAGE_LIMITS["robot_group"]) - 1_000
REMINDER_LINES = 5  # person lines in a reminder; a work notice is at most 2,000 bytes
NAME_CHARS = 40  # of a campaign's name in a message
DUE_SOON_LINK = "/h5/apps/precision_control/?filter=soon"


def _china(moment: datetime) -> str:
    return moment.astimezone(CHINA).strftime("%m月%d日 %H:%M")


def _slot(now: datetime) -> str:
    start = datetime.fromtimestamp(now.timestamp() // SLOT.total_seconds() * SLOT.total_seconds(), UTC)
    return f"{start:%Y%m%dT%H%M}"


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _digest(text: str) -> str:
    """A short stable stand-in for a conversation id in idempotency keys (ids run to 64+ characters)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Node:
    id: int
    name: str
    level: str
    path: str


def _nodes_with_ancestors(session: orm.Session, ids: set[int]) -> dict[int, _Node]:
    """The nodes of `ids` and every node above them (two statements whatever their number)."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    paths = session.scalars(sa.select(OrgNode.path).where(OrgNode.id.in_(ids))).all()
    everything = {node_id for path in paths for node_id in path_ids(path)} | ids
    return {
        row.id: _Node(row.id, row.name, row.level, row.path)
        for row in session.execute(
            sa.select(OrgNode.id, OrgNode.name, OrgNode.level, OrgNode.path).where(OrgNode.id.in_(everything))
        )
    }


def _enqueue(session: orm.Session, channel: str, message: dict, key: str, **where: Any) -> bool:
    """Queue one message; False (logged, nothing stored) when the outbox refuses it — one broken destination must
    not hold back the others."""
    try:
        outbox.enqueue_message(channel, message, idempotency_key=key, db=session, **where)
    except ApiError as exc:
        log.warning(
            "precision-control message refused by the outbox",
            extra={"code": exc.code, "channel": channel, "job": "precision_control.escalation"},
        )
        return False
    return True


# -- reminders ----------------------------------------------------------------------------------------------------


@dataclass
class _Recipient:
    kind: str  # member | team | institution
    who: int
    total: int = 0
    institution_id: int | None = None
    lines: list[tuple[datetime, str | None, str]] = field(default_factory=list)  # (due, masked name, category)


def _reminder_rows(session: orm.Session, due_soon: sa.ColumnElement[bool]) -> dict[tuple[str, int], _Recipient]:
    """Per recipient: how many tasks, and the first `REMINDER_LINES` by due time (a window function: a few rows per
    recipient read, however many tasks are due)."""
    kind = sa.case(
        (ControlTask.member_id.is_not(None), sa.literal("member")),
        (ControlTask.team_id.is_not(None), sa.literal("team")),
        else_=sa.literal("institution"),
    )
    who = sa.case(
        (ControlTask.member_id.is_not(None), ControlTask.member_id),
        (ControlTask.team_id.is_not(None), ControlTask.team_id),
        else_=ControlTask.institution_id,
    )
    window = {"partition_by": (kind, who)}
    ranked = (
        sa.select(
            kind.label("kind"),
            who.label("who"),
            ControlTask.institution_id,
            ControlTask.due_at,
            CampaignPerson.name_masked,
            CampaignPerson.category,
            sa.func.row_number().over(order_by=(ControlTask.due_at, ControlTask.id), **window).label("rank"),
            sa.func.count().over(**window).label("total"),
        )
        .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
        .where(due_soon)
        .subquery("ranked")
    )
    out: dict[tuple[str, int], _Recipient] = {}
    for row in session.execute(
        sa.select(ranked).where(ranked.c.rank <= REMINDER_LINES).order_by(ranked.c.kind, ranked.c.who, ranked.c.rank)
    ):
        if row.who is None:
            continue  # a working task always has an institution; nothing to tell otherwise
        recipient = out.setdefault((row.kind, row.who), _Recipient(row.kind, row.who, row.total, row.institution_id))
        recipient.lines.append((row.due_at, row.name_masked, row.category))
    return out


def _reminder_message(campaign: Campaign, recipient: _Recipient, *, persons: bool, hours: int) -> dict:
    title = f"任务即将到期：{_short(campaign.name)}"
    lines = [f"{recipient.total} 项任务将在 {hours} 小时内到期，请及时处置"]
    if persons:
        lines += [
            f"{name or '（已隐去）'}（{category}）　截止 {_china(due)}" for due, name, category in recipient.lines
        ]
        if recipient.total > len(recipient.lines):
            lines.append(f"等共 {recipient.total} 项")
    else:
        # A group chat holds people who do not work these tasks: counts and times only, never who is on a roster.
        lines.append(f"最早截止：{_china(recipient.lines[0][0])}")
    return messages.notice(title=title, lines=lines, link=public_url(DUE_SOON_LINK), link_text="查看即将到期的任务")


def remind(session: orm.Session, campaign: Campaign, now: datetime) -> dict[str, int]:
    """Queue the reminders due for `campaign` at `now` and mark the tasks reminded (see the module docstring).
    Does not commit."""
    counts = {"messages": 0, "tasks": 0, "unreached": 0}
    hours = campaign.remind_before_hours or 0
    if campaign.state != "active" or hours <= 0:
        return counts
    column = ControlTask.due_at.type
    due_soon = sa.and_(
        ControlTask.campaign_id == campaign.id,
        ControlTask.state.in_(WORKING_STATES),
        ControlTask.reminded_at.is_(None),
        ControlTask.due_at > sa.literal(now, column),
        ControlTask.due_at <= sa.literal(now + timedelta(hours=hours), column),
    )
    recipients = _reminder_rows(session, due_soon)
    if not recipients:
        return counts
    by_kind: dict[str, set[int]] = defaultdict(set)
    for kind, who in recipients:
        by_kind[kind].add(who)
    userids = dict(
        session.execute(
            sa.select(OrgMember.id, OrgMember.userid).where(
                OrgMember.id.in_(by_kind["member"] or [-1]), OrgMember.deleted_at.is_(None), OrgMember.active
            )
        ).all()
    )
    team_staff: dict[int, list[str]] = defaultdict(list)
    for team_id, userid in session.execute(
        sa.select(TeamMember.team_id, OrgMember.userid)
        .join(OrgMember, OrgMember.id == TeamMember.member_id)
        .where(TeamMember.team_id.in_(by_kind["team"] or [-1]), OrgMember.deleted_at.is_(None), OrgMember.active)
        .order_by(TeamMember.team_id, OrgMember.userid)
    ):
        team_staff[team_id].append(userid)
    routes = routes_by_node(session) if by_kind["institution"] else {}
    nodes = _nodes_with_ancestors(session, by_kind["institution"]) if routes else {}

    # One message per destination: a doctor's own tasks and their teams' unclaimed ones go in one work notice; the
    # institutions sharing a chat (by route inheritance) go in one chat message.
    destinations: dict[tuple[str, str], _Recipient] = {}

    def add(channel: str, target: str, recipient: _Recipient) -> None:
        merged = destinations.setdefault((channel, target), _Recipient(channel, 0, 0, recipient.institution_id))
        merged.total += recipient.total
        merged.lines = sorted(merged.lines + recipient.lines, key=lambda line: line[0])[:REMINDER_LINES]

    for (kind, who), recipient in sorted(recipients.items()):
        if kind == "member" and who in userids:
            add("work_notice", userids[who], recipient)
        elif kind == "team" and team_staff.get(who):
            # Work notices to the team's staff, never the signed-doctor chat: residents are members of it.
            for userid in team_staff[who]:
                add("work_notice", userid, recipient)
        elif kind == "institution" and who in nodes and (route := route_for(nodes[who].path, routes)):
            add("robot_group", route.conversation_id, recipient)
        else:
            counts["unreached"] += recipient.total
        counts["tasks"] += recipient.total

    slot = _slot(now)
    mentions = {route.conversation_id: route.mention_userids or [] for route in routes.values()}
    for (channel, target), recipient in sorted(destinations.items()):
        # The slot alone is not enough: a second run in the same slot sees only tasks newly due.
        key = (
            f"precision_control:reminder:{campaign.id}:{target}:{slot}:{recipient.total}:{recipient.lines[0][0]:%H%M%S}"
        )
        notice = ControlNotice(
            campaign_id=campaign.id,
            kind="reminder",
            node_id=recipient.institution_id,
            level=0,
            task_count=recipient.total,
            message_key=key,
            sent_at=now,
        )
        if channel == "work_notice":
            message = _reminder_message(campaign, recipient, persons=True, hours=hours)
            sent = _enqueue(session, channel, message, key, to=[target])
            notice.userid = target
        else:
            # A chat holds people who do not work these tasks: counts and times only.
            base = _reminder_message(campaign, recipient, persons=False, hours=hours)
            message = messages.markdown(base["title"], base["text"], at_userids=mentions.get(target, []))
            sent = _enqueue(session, channel, message, key, target=target)
            notice.conversation_id = target
        if sent:
            session.add(notice)
            counts["messages"] += 1
        else:
            counts["unreached"] += recipient.total
    # Every task in the window is marked — reached or not — so each is looked at once (see the module docstring).
    session.execute(
        sa.update(ControlTask)
        .where(due_soon)
        .values(reminded_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if counts["unreached"]:
        log.warning(
            "precision-control reminders nobody could be sent",
            extra={"rows": counts["unreached"], "action": "reminder_unreached", "job": "precision_control.escalation"},
        )
    if counts["messages"]:
        # The reminders carry masked names to the doctors: on record, as every showing of a person is.
        audit.record(
            None,
            "precision_control.reminders.send",
            resource_type="control_campaign",
            resource_id=campaign.id,
            node_id=campaign.owner_node_id,
            detail={"messages": counts["messages"], "tasks": counts["tasks"]},
            session=session,
        )
    return counts


# -- escalation ---------------------------------------------------------------------------------------------------


@dataclass
class OverdueUnit:
    """One line of an escalation message: a unit's overdue tasks at one level."""

    level: int
    node_id: int  # the institution, or the county (or campaign owner) whose queue holds them
    name: str
    queue: bool
    count: int
    oldest_due: datetime
    newest_escalation: datetime


def _raise_levels(session: orm.Session, campaign: Campaign, now: datetime, overdue: sa.ColumnElement[bool]) -> int:
    """Move overdue tasks to the level their overdue time reached: per level, highest first, one INSERT … SELECT of
    their escalate events then one UPDATE. Returns how many tasks moved."""
    hours = list(campaign.escalation_hours or [0, 24, 48])
    moved = 0
    t = orm.aliased(ControlTask, name="t")
    for level in (3, 2, 1):
        cutoff = sa.literal(now - timedelta(hours=hours[level - 1]), ControlTask.due_at.type)

        def reaching(task: Any, cutoff: Any = cutoff, level: int = level) -> sa.ColumnElement[bool]:
            return sa.and_(task.due_at <= cutoff, task.escalation_level < level)

        events = sa.select(
            t.id,
            sa.literal("escalate"),
            t.state,
            t.state,
            sa.literal(SYSTEM_ACTOR),
            sa.null(),
            _json_object(session, {"level": sa.literal_column(str(level)), "from_level": t.escalation_level}),
            sa.literal(now, ControlTaskEvent.at.type),
        ).where(
            t.campaign_id == campaign.id,
            t.state.in_(OPEN_STATES),
            t.due_at < sa.literal(now, ControlTask.due_at.type),
            reaching(t),
        )
        session.execute(
            sa.insert(ControlTaskEvent.__table__).from_select(
                ["task_id", "action", "from_state", "to_state", "actor", "reason", "detail", "at"], events
            )
        )
        result = session.execute(
            sa.update(ControlTask)
            .where(overdue, reaching(ControlTask))
            .values(escalation_level=level, escalated_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        moved += result.rowcount or 0
    return moved


def _units(
    session: orm.Session, campaign: Campaign, overdue: sa.ColumnElement[bool]
) -> tuple[list[tuple[int, OverdueUnit]], dict[int, _Node]]:
    """(responsible node, unit line) for every (level, institution or queue) with escalated overdue tasks."""
    rows = session.execute(
        sa.select(
            ControlTask.escalation_level,
            ControlTask.institution_id,
            ControlTask.county_id,
            sa.func.count(),
            sa.func.min(ControlTask.due_at),
            sa.func.max(ControlTask.escalated_at),
        )
        .where(overdue, ControlTask.escalation_level >= 1)
        .group_by(ControlTask.escalation_level, ControlTask.institution_id, ControlTask.county_id)
    ).all()
    ids = {row[1] for row in rows} | {row[2] for row in rows} | {campaign.owner_node_id}
    nodes = _nodes_with_ancestors(session, ids)
    units: dict[tuple[int, int, bool], OverdueUnit] = {}
    responsible: dict[tuple[int, int, bool], int] = {}
    for level, institution_id, county_id, count, oldest, newest in rows:
        level = min(level, 3)
        holder = county_id if county_id in nodes else campaign.owner_node_id
        if institution_id in nodes:
            unit_id, queue = institution_id, False
            if level == 1:
                answers = institution_id
            elif level == 2:
                lead = next(
                    (
                        i
                        for i in reversed(path_ids(nodes[institution_id].path))
                        if i in nodes and nodes[i].level == "medical_community_lead"
                    ),
                    None,
                )
                answers = lead if lead is not None else holder
            else:
                answers = holder
        else:
            # Queued (or its institution gone from the tree): the county holding its queue answers at every level.
            unit_id, queue, answers = holder, True, holder
        if unit_id not in nodes or answers not in nodes:
            continue
        key = (level, unit_id, queue)
        if key in units:  # the same unit under two county ids (hand-edited data): still one line
            unit = units[key]
            unit.count += count
            unit.oldest_due = min(unit.oldest_due, oldest)
            unit.newest_escalation = max(unit.newest_escalation, newest)
            continue
        name = f"{nodes[unit_id].name}（待分派）" if queue else nodes[unit_id].name
        units[key] = OverdueUnit(level, unit_id, name, queue, count, oldest, newest)
        responsible[key] = answers
    return [(responsible[key], unit) for key, unit in units.items()], nodes


def _unit_line(unit: OverdueUnit, new: bool) -> str:
    mark = "（新增）" if new else ""
    return f"- **{unit.name}**：逾期 {unit.count} 项，最早应于 {_china(unit.oldest_due)} 完成{mark}"


def escalation_messages(
    campaign: Campaign,
    route: AlertRoute,
    units: Sequence[OverdueUnit],
    now: datetime,
    *,
    last_sent: datetime | None,
) -> list[tuple[dict, int, int]]:
    """The chat's message(s) for the campaign: one, or several numbered (1/n) when the lines do not fit
    `MESSAGE_BYTES`; each with its highest level and its task count. A plain function (tests build big groups)."""
    hours = list(campaign.escalation_hours or [0, 24, 48])
    ordered = sorted(units, key=lambda u: (-u.level, u.queue, -u.count, u.name))
    total = sum(u.count for u in ordered)
    repeat = last_sent is not None and not any(u.newest_escalation > last_sent for u in ordered)
    link = public_url(f"/h5/apps/precision_control/dashboard/?campaign_id={campaign.id}&node_id={route.node_id}")
    footer = ["", f"[查看督办看板]({link})"]
    mention_bytes = sum(len(f" @{u}".encode()) for u in route.mention_userids or []) + 2
    budget = MESSAGE_BYTES - mention_bytes - len("\n".join(footer).encode()) - 600  # 600: header and section titles

    def heading(level: int) -> str:
        return f"#### {LEVELS[level]}督办（逾期超过 {hours[level - 1]} 小时）"

    chunks: list[list[OverdueUnit]] = [[]]
    used = 0
    for unit in ordered:
        size = len(_unit_line(unit, True).encode()) + 1
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(unit)
        used += size
    built = []
    badge = messages.LEVELS["critical"] if ordered and ordered[0].level >= 3 else messages.LEVELS["warning"]
    for index, chunk in enumerate(chunks, start=1):
        part = f"（{index}/{len(chunks)}）" if len(chunks) > 1 else ""
        title = f"{badge} 逾期督办：{_short(campaign.name)}{part}"
        body = [
            f"### {title}",
            f"**共 {total} 项任务逾期未完成**，涉及 {len(ordered)} 个单位{'（持续逾期）' if repeat else ''}",
            f"**发送时间**：{_china(now)}（北京时间）",
        ]
        level = None
        for unit in chunk:
            if unit.level != level:
                level = unit.level
                body += ["", heading(level)]
            body.append(_unit_line(unit, last_sent is not None and unit.newest_escalation > last_sent))
        message = messages.markdown(title, "\n".join(body + footer), at_userids=route.mention_userids or [])
        built.append((message, max(u.level for u in chunk), sum(u.count for u in chunk)))
    return built


def escalate(session: orm.Session, campaign: Campaign, now: datetime) -> dict[str, int]:
    """Raise the levels of `campaign`'s overdue tasks and queue the grouped messages due (see the module
    docstring). Does not commit."""
    counts = {"escalated": 0, "messages": 0, "chats": 0, "unrouted": 0}
    if campaign.state != "active":
        return counts
    overdue = sa.and_(
        ControlTask.campaign_id == campaign.id,
        ControlTask.state.in_(OPEN_STATES),
        ControlTask.due_at < sa.literal(now, ControlTask.due_at.type),
    )
    counts["escalated"] = _raise_levels(session, campaign, now, overdue)
    lines, nodes = _units(session, campaign, overdue)
    if not lines:
        return counts
    routes = routes_by_node(session)
    # Grouped by the chat itself: two routes (a county and its community, say) may point at one chat.
    groups: dict[str, list[OverdueUnit]] = defaultdict(list)
    chat_route: dict[str, AlertRoute] = {}
    for answers, unit in lines:
        route = route_for(nodes[answers].path, routes)
        if route is None:
            counts["unrouted"] += unit.count
            continue
        groups[route.conversation_id].append(unit)
        known = chat_route.get(route.conversation_id)
        chat_route[route.conversation_id] = route if known is None or route.node_id < known.node_id else known
    if counts["unrouted"]:
        log.warning(
            "overdue precision-control tasks have no alert route at or above their unit; not sent",
            extra={"rows": counts["unrouted"], "action": "escalation_unrouted", "job": "precision_control.escalation"},
        )
    last_sent = dict(
        session.execute(
            sa.select(ControlNotice.conversation_id, sa.func.max(ControlNotice.sent_at))
            .where(
                ControlNotice.campaign_id == campaign.id,
                ControlNotice.kind == "escalation",
                ControlNotice.conversation_id.in_(list(groups) or [""]),
            )
            .group_by(ControlNotice.conversation_id)
        ).all()
    )
    repeat = timedelta(hours=campaign.repeat_interval_hours or 24)
    slot = _slot(now)
    for chat, units in sorted(groups.items()):
        route = chat_route[chat]
        last = last_sent.get(chat)
        newest = max(u.newest_escalation for u in units)
        due = (
            last is None
            or now >= last + repeat
            or (newest > last and now >= last + GROUP_INTERVAL)  # tasks newly reaching this chat
        )
        if not due:
            continue
        counts["chats"] += 1
        built = escalation_messages(campaign, route, units, now, last_sent=last)
        for index, (message, level, task_count) in enumerate(built, start=1):
            key = f"precision_control:escalation:{campaign.id}:{_digest(chat)}:{level}:{slot}:{index}"
            if not _enqueue(session, "robot_group", message, key, target=route.conversation_id):
                continue
            session.add(
                ControlNotice(
                    campaign_id=campaign.id,
                    kind="escalation",
                    node_id=route.node_id,
                    level=level,
                    conversation_id=route.conversation_id,
                    task_count=task_count,
                    message_key=key,
                    sent_at=now,
                )
            )
            counts["messages"] += 1
    session.flush()
    return counts


# -- the job ------------------------------------------------------------------------------------------------------


def run(now: datetime | None = None) -> dict[str, Any]:
    """The periodic job: reminders then escalation for every active campaign, each part of each campaign in its
    own transaction (a failure rolls back that part only and is retried by the next run)."""
    now = now or utcnow()
    session = db.session()
    campaign_ids = session.scalars(sa.select(Campaign.id).where(Campaign.state == "active").order_by(Campaign.id)).all()
    totals: dict[str, Any] = {
        "campaigns": len(campaign_ids),
        "failed": 0,
        "reminders": defaultdict(int),
        "escalation": defaultdict(int),
    }
    for campaign_id in campaign_ids:
        for name, part in (("reminders", remind), ("escalation", escalate)):
            try:
                campaign = session.get(Campaign, campaign_id)
                counts = part(session, campaign, now) if campaign is not None else {}
                session.commit()
            except Exception:
                session.rollback()
                totals["failed"] += 1
                log.exception(
                    "precision-control %s failed for a campaign", name, extra={"job": "precision_control.escalation"}
                )
                continue
            for key, value in counts.items():
                totals[name][key] += value
    totals["reminders"], totals["escalation"] = dict(totals["reminders"]), dict(totals["escalation"])
    log.info("precision-control reminders and escalation", extra={"result": totals, "job": "precision_control"})
    return totals


def init_app(app: Flask) -> None:
    app.extensions["workbench.queue"].every(JOB_SECONDS, run)
