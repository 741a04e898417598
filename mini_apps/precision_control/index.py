"""The county index of a campaign (reference/domain.md §3): a node's figures and the five-colour map, up and down
the owner's tree, the daily snapshot (`ControlIndexDay`) and the daily push to the owner's chat.

Figures of a node, over the campaign's tasks attributed to the node's subtree (at `now`):
- `tasks`: every task; `open`: queued, assigned, accepted or in progress; `finished`: completed, unreachable,
  transferred or closed (and `completed`, `unreachable`, `transferred`, `closed` each);
- `on_time`: finished tasks with `finished_at <= due_at` (a task without a due time cannot be late);
- `overdue`: open tasks with `due_at < now`; `positive`: tasks whose result was a positive finding.
Measures, in percent, None when the denominator is 0:
- `completion_rate` = completed / (tasks − closed − transferred) × 100 — closed (duplicate, deceased, out of
  scope) and transferred (left the area) tasks were never the node's to complete; unreachable ones were;
- `on_time_rate` = on_time / finished × 100;
- `overdue_share` = overdue / open × 100.
The campaign's `index_rule` picks one measure and four increasing thresholds t0..t3. Higher is better for the
completion and on-time rates: value < t0 red, < t1 orange, < t2 yellow, < t3 blue, else green. Lower is better for
the overdue share: value ≤ t0 green, ≤ t1 blue, ≤ t2 yellow, ≤ t3 orange, else red. No value (no tasks, or a zero
denominator) → no colour. Comparisons are exact (fractions), so a county turns at the very task that crosses a
threshold; values are shown rounded to two decimals.

Attribution: a task counts at its institution (`institution_id`) and every node above it; a task with no
institution (in a county queue) at its county and above; a task with neither (no county answers for its address)
only at the campaign's owner node. All nodes' figures come from one aggregate over the campaign's tasks grouped by
that node, rolled up along the materialised paths in Python: two statements whatever the tree's size.

Who reads: administrators, institution administrators and supervisors whose scope covers the node, for a node of
the owner's subtree (the owner's own administrators read all of it). Anyone else — a clinician, another county's
administrator — gets the same 404 as a campaign or node that does not exist. Aggregates only: no personal data
leaves here, so reads are not audited.

Daily (`snapshot_and_push`, 23:55 China time): for each active campaign, one `ControlIndexDay` row per node of the
owner's subtree with figures (owner, cities, counties, medical communities, institutions) for the China day,
upserted (a re-run the same day overwrites with the figures of that moment); then one markdown message with the
owner's figures, the counties per colour and the red and orange counties by name to the chat of the nearest
`AlertRoute` at or above the owner node, once per campaign and day (a `ControlNotice` and the outbox's idempotency
key both keyed on the campaign and day).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from bot import messages, outbox
from mini_apps.precision_control.models import (
    COLOURS,
    FINISHED_STATES,
    OPEN_STATES,
    Campaign,
    ControlIndexDay,
    ControlNotice,
    ControlTask,
)
from org_sync.models import OrgNode, path_ids
from org_sync.rollup import REPORTED_LEVELS
from supervision.alerts import route_for, routes_by_node
from workbench import db, h5
from workbench.auth.principal import Principal
from workbench.db import utcnow
from workbench.errors import ApiError

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
READER_ROLES = ("admin", "institution_admin", "supervisor")
MEASURES = {"completion_rate": "完成率", "on_time_rate": "按时完成率", "overdue_share": "逾期占比"}
LOWER_IS_BETTER = ("overdue_share",)
COLOUR_NAMES = {"red": "红", "orange": "橙", "yellow": "黄", "blue": "蓝", "green": "绿"}
COUNTS = ("tasks", "open", "finished", "completed", "unreachable", "transferred", "closed", "on_time", "overdue")
COUNTS += ("positive",)
MAX_TREND_DAYS = 366
DAILY_SECONDS = 86400
DAILY_OFFSET = 15 * 3600 + 55 * 60  # 15:55 UTC = 23:55 China time: the day's figures as the day ends
DASHBOARD_PATH = "/h5/apps/precision_control/dashboard/"
MAX_NAMED_COUNTIES = 40  # per colour in the daily message; the dashboard has the rest


def _invalid(field_name: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field_name)


def china_day(moment: datetime) -> date:
    """The calendar day in China of a UTC moment (the index's days are China's)."""
    return moment.astimezone(CHINA).date()


# -- figures ------------------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """The counts of one node (see the module docstring)."""

    tasks: int = 0
    open: int = 0
    finished: int = 0
    completed: int = 0
    unreachable: int = 0
    transferred: int = 0
    closed: int = 0
    on_time: int = 0
    overdue: int = 0
    positive: int = 0

    def add(self, other: Figures) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def exact(self, measure: str) -> Fraction | None:
        """The measure as an exact fraction of 100 (None when its denominator is 0)."""
        if measure == "completion_rate":
            numerator, denominator = self.completed, self.tasks - self.closed - self.transferred
        elif measure == "on_time_rate":
            numerator, denominator = self.on_time, self.finished
        elif measure == "overdue_share":
            numerator, denominator = self.overdue, self.open
        else:
            raise ValueError(measure)
        return Fraction(numerator * 100, denominator) if denominator > 0 else None

    def rate(self, measure: str) -> float | None:
        value = self.exact(measure)
        return None if value is None else round(float(value), 2)

    def view(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COUNTS} | {m: self.rate(m) for m in MEASURES}


def colour_of(rule: Mapping[str, Any], figures: Figures) -> str | None:
    """The five-colour verdict of the campaign's index rule for `figures` (module docstring); None without a value."""
    if figures.tasks == 0:
        return None
    measure = rule["measure"]
    value = figures.exact(measure)
    if value is None:
        return None
    thresholds = [Fraction(str(t)) for t in rule["thresholds"]]  # str: 66.7 is 667/10, not the nearest double
    if measure in LOWER_IS_BETTER:
        for colour, threshold in zip(reversed(COLOURS), thresholds, strict=False):
            if value <= threshold:
                return colour
        return COLOURS[0]
    for colour, threshold in zip(COLOURS, thresholds, strict=False):
        if value < threshold:
            return colour
    return COLOURS[-1]


@dataclass
class CampaignFigures:
    """Every node's figures of one campaign at `now`: `at(node)` for any node of the owner's subtree."""

    campaign: Campaign
    owner: OrgNode
    now: datetime
    by_node: dict[int, Figures] = field(default_factory=dict)

    def at(self, node: OrgNode) -> Figures:
        return self.by_node.get(node.id) or Figures()

    def entry(self, node: OrgNode) -> dict[str, Any]:
        """A node with its figures, the rule's value and colour (what the API and the dashboard show)."""
        figures = self.at(node)
        return {
            "node_id": node.id,
            "name": node.name,
            "level": node.level,
            "parent_id": node.parent_id,
            **figures.view(),
            "value": figures.rate(self.campaign.index_rule["measure"]),
            "colour": colour_of(self.campaign.index_rule, figures),
        }


def compute(session: orm.Session, campaign: Campaign, owner: OrgNode, now: datetime) -> CampaignFigures:
    """Every node's figures in two statements: the tasks aggregated per attribution node (institution, else
    county), then those nodes' paths; each group is added to every node on its path (set-based, never per node)."""
    task = ControlTask
    node_key = sa.func.coalesce(task.institution_id, task.county_id)

    def count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    finished = task.state.in_(FINISHED_STATES)
    open_ = task.state.in_(OPEN_STATES)
    rows = session.execute(
        sa.select(
            node_key.label("node_id"),
            sa.func.count().label("tasks"),
            count_if(open_).label("open"),
            count_if(finished).label("finished"),
            count_if(task.state == "completed").label("completed"),
            count_if(task.state == "unreachable").label("unreachable"),
            count_if(task.state == "transferred").label("transferred"),
            count_if(task.state == "closed").label("closed"),
            count_if(
                sa.and_(
                    finished,
                    sa.or_(
                        task.due_at.is_(None), sa.and_(task.finished_at.is_not(None), task.finished_at <= task.due_at)
                    ),
                )
            ).label("on_time"),
            count_if(sa.and_(open_, task.due_at < now)).label("overdue"),
            count_if(task.positive.is_(True)).label("positive"),
        )
        .where(task.campaign_id == campaign.id)
        .group_by(node_key)
    ).all()
    groups = {row.node_id: Figures(**{name: int(getattr(row, name)) for name in COUNTS}) for row in rows}
    keyed = [key for key in groups if key is not None]
    paths = (
        dict(session.execute(sa.select(OrgNode.id, OrgNode.path).where(OrgNode.id.in_(keyed))).all()) if keyed else {}
    )
    result = CampaignFigures(campaign, owner, now)
    for key, figures in groups.items():
        # Unattributed tasks (no county answers for the address) are the owner's alone.
        targets = path_ids(paths[key]) if key in paths else [owner.id]
        for node_id in targets:
            result.by_node.setdefault(node_id, Figures()).add(figures)
    return result


# -- scope and nodes -----------------------------------------------------------------------------------------------


def _campaign_not_found(campaign_id: Any) -> ApiError:
    return ApiError("not_found", f"专项任务 {campaign_id} 不存在", status=404)


@dataclass
class Place:
    """Where a reader stands in a campaign: the campaign, its owner node, the node asked for and the highest node
    the reader may see on the way to it (the breadcrumbs' first)."""

    campaign: Campaign
    owner: OrgNode
    node: OrgNode
    top: OrgNode


def index_place(session: orm.Session, principal: Principal, campaign_id: int, node_id: int | None) -> Place:
    """The campaign and node a reader may see the index of; default node: the owner, or the reader's widest node
    inside the owner's subtree. 404 (as if absent) outside the reader's scope or the owner's subtree; 422 for a
    node without figures (an internal department)."""
    campaign = session.get(Campaign, campaign_id)
    owner = session.get(OrgNode, campaign.owner_node_id) if campaign is not None else None
    if campaign is None or owner is None:
        raise _campaign_not_found(campaign_id)
    scope = principal.scope(*READER_ROLES)
    # The reader's outermost nodes inside the campaign: the owner itself, or subtrees beneath it.
    if scope.covers_path(owner.path):
        tops = [owner.path]
    else:
        tops = sorted((p for p in scope.paths if p.startswith(owner.path)), key=lambda p: (len(p), p))
    if not tops:
        raise _campaign_not_found(campaign_id)
    if node_id is None:
        node = session.get(OrgNode, path_ids(tops[0])[-1])
    else:
        node = session.get(OrgNode, node_id)
        if (
            node is None
            or node.deleted_at is not None
            or not node.path.startswith(owner.path)
            or not scope.covers_path(node.path)
        ):
            raise ApiError(
                "not_found", f"组织节点 {node_id} 不存在或不在该专项任务的范围内", status=404, field="node_id"
            )
    if node is None:
        raise _campaign_not_found(campaign_id)
    if node.level not in REPORTED_LEVELS:
        raise _invalid("node_id", "科室没有指数，请选择卫健委、卫健局或医疗机构")
    top_path = next(p for p in tops if node.path.startswith(p))
    top = owner if top_path == owner.path else session.get(OrgNode, path_ids(top_path)[-1])
    return Place(campaign, owner, node, top or node)


def _children(session: orm.Session, node: OrgNode) -> list[OrgNode]:
    return list(
        session.scalars(
            sa.select(OrgNode)
            .where(OrgNode.parent_id == node.id, OrgNode.deleted_at.is_(None), OrgNode.level.in_(REPORTED_LEVELS))
            .order_by(OrgNode.sort_order, OrgNode.id)
        )
    )


def _subtree(session: orm.Session, node: OrgNode, levels: Sequence[str]) -> list[OrgNode]:
    """Live nodes of `levels` at or below `node`, in tree order (one index range scan on the path)."""
    return list(
        session.scalars(
            sa.select(OrgNode)
            .where(OrgNode.path.startswith(node.path), OrgNode.deleted_at.is_(None), OrgNode.level.in_(levels))
            .order_by(OrgNode.path)
        )
    )


def _trail(session: orm.Session, place: Place) -> list[dict[str, Any]]:
    ids = path_ids(place.node.path)
    ids = ids[ids.index(place.top.id) :] if place.top.id in ids else [place.node.id]
    nodes = {n.id: n for n in session.scalars(sa.select(OrgNode).where(OrgNode.id.in_(ids)))}
    return [{"node_id": i, "name": nodes[i].name, "level": nodes[i].level} for i in ids if i in nodes]


def _campaign_view(campaign: Campaign, owner: OrgNode) -> dict[str, Any]:
    rule = campaign.index_rule
    return {
        "id": campaign.id,
        "name": campaign.name,
        "state": campaign.state,
        "owner_node_id": owner.id,
        "owner_name": owner.name,
        "measure": rule["measure"],
        "measure_label": MEASURES.get(rule["measure"], rule["measure"]),
        "thresholds": list(rule["thresholds"]),
    }


# -- the API's reads -----------------------------------------------------------------------------------------------


def node_index(
    session: orm.Session,
    principal: Principal,
    campaign_id: int,
    node_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A node's figures and colour with its children's (the drill-down) and the breadcrumbs, at `at` (default
    now: what counts as overdue)."""
    place = index_place(session, principal, campaign_id, node_id)
    now = at or utcnow()
    figures = compute(session, place.campaign, place.owner, now)
    return {
        "campaign": _campaign_view(place.campaign, place.owner),
        "at": now,
        "node": figures.entry(place.node),
        "children": [figures.entry(child) for child in _children(session, place.node)],
        "trail": _trail(session, place),
    }


def colour_counts(entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many entries of each colour (`none`: no colour)."""
    counts = {colour: 0 for colour in (*COLOURS, "none")}
    for entry in entries:
        counts[entry["colour"] or "none"] += 1
    return counts


def county_map(
    session: orm.Session, principal: Principal, campaign_id: int, node_id: int | None = None
) -> dict[str, Any]:
    """Every county at or below the node, with its figures and colour: the five-colour map's grid. At a node below
    a county, its county is not shown (the reader may not see the whole county)."""
    place = index_place(session, principal, campaign_id, node_id)
    figures = compute(session, place.campaign, place.owner, utcnow())
    counties = [figures.entry(county) for county in _subtree(session, place.node, ("county_bureau",))]
    return {
        "campaign": _campaign_view(place.campaign, place.owner),
        "node": figures.entry(place.node),
        "counties": counties,
        "counts": colour_counts(counties),
    }


def _day_entry(row: ControlIndexDay, rule: Mapping[str, Any]) -> dict[str, Any]:
    """A stored day: its counts, the rule's value from them, and the stored colour."""
    figures = Figures(
        tasks=row.tasks,
        open=row.tasks - row.finished,
        finished=row.finished,
        completed=row.completed,
        closed=row.excluded,  # closed and transferred together: all the completion rate needs
        on_time=row.on_time,
        overdue=row.overdue,
        positive=row.positive,
    )
    value = figures.rate(rule["measure"])
    return {
        "day": row.day,
        "live": False,
        "tasks": row.tasks,
        "finished": row.finished,
        "completed": row.completed,
        "on_time": row.on_time,
        "overdue": row.overdue,
        "positive": row.positive,
        "value": value,
        "colour": colour_of(rule, figures),  # by the current rule, as the value is
    }


def trend(
    session: orm.Session, principal: Principal, campaign_id: int, node_id: int | None = None, days: int = 30
) -> dict[str, Any]:
    """The node's stored days (the last `days` China days before today) and today computed live, oldest first."""
    if not 1 <= days <= MAX_TREND_DAYS:
        raise _invalid("days", f"天数须为 1–{MAX_TREND_DAYS}")
    place = index_place(session, principal, campaign_id, node_id)
    now = utcnow()
    today = china_day(now)
    rule = place.campaign.index_rule
    rows = session.scalars(
        sa.select(ControlIndexDay)
        .where(
            ControlIndexDay.campaign_id == place.campaign.id,
            ControlIndexDay.node_id == place.node.id,
            ControlIndexDay.day > today - timedelta(days=days),
            ControlIndexDay.day < today,
        )
        .order_by(ControlIndexDay.day)
    ).all()
    points = [_day_entry(row, rule) for row in rows]
    live = compute(session, place.campaign, place.owner, now).entry(place.node)
    points.append(
        {
            "day": today,
            "live": True,
            **{k: live[k] for k in ("tasks", "finished", "completed", "on_time", "overdue", "positive")},
            "value": live["value"],
            "colour": live["colour"],
        }
    )
    return {
        "campaign": _campaign_view(place.campaign, place.owner),
        "node": {"node_id": place.node.id, "name": place.node.name, "level": place.node.level},
        "days": days,
        "points": points,
    }


# -- the daily snapshot and push -----------------------------------------------------------------------------------


def _upsert(session: orm.Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(ControlIndexDay.__table__)


def snapshot(session: orm.Session, figures: CampaignFigures, day: date) -> list[OrgNode]:
    """Upsert the day's row of the owner and every node of its subtree with figures (one statement); returns the
    nodes. Does not commit."""
    nodes = _subtree(session, figures.owner, REPORTED_LEVELS)
    if figures.owner.id not in {n.id for n in nodes}:
        nodes.insert(0, figures.owner)
    rule = figures.campaign.index_rule
    rows = []
    for node in nodes:
        counts = figures.at(node)
        row = {
            "campaign_id": figures.campaign.id,
            "node_id": node.id,
            "day": day,
            "tasks": counts.tasks,
            "finished": counts.finished,
            "completed": counts.completed,
            "on_time": counts.on_time,
            "overdue": counts.overdue,
            "positive": counts.positive,
            "excluded": counts.closed + counts.transferred,
            "colour": colour_of(rule, counts),
        }
        rows.append(row)
    stmt = _upsert(session)
    updated = {name: stmt.excluded[name] for name in rows[0] if name not in ("campaign_id", "node_id", "day")}
    session.execute(stmt.on_conflict_do_update(index_elements=["campaign_id", "node_id", "day"], set_=updated), rows)
    return nodes


def _shown(value: float | None) -> str:
    if value is None:
        return "—"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def daily_message(figures: CampaignFigures, counties: Sequence[dict[str, Any]], day: date) -> dict:
    """The day's index as one markdown message: the owner's figures, counties per colour, red and orange ones."""
    campaign, owner = figures.campaign, figures.owner
    me = figures.entry(owner)
    measure = campaign.index_rule["measure"]
    label = MEASURES.get(measure, measure)
    colour = COLOUR_NAMES.get(me["colour"] or "", "无")
    title = f"精密智控每日指数 {campaign.name} {day.isoformat()}"
    lines = [
        f"### {title}",
        f"**{owner.name}**：{label} {_shown(me['value'])}%（{colour}色）",
        f"- 任务 {me['tasks']}，已完成 {me['completed']}，完成率 {_shown(me['completion_rate'])}%",
        f"- 按时完成率 {_shown(me['on_time_rate'])}%，逾期 {me['overdue']}（占未完成 {_shown(me['overdue_share'])}%）",
        f"- 阳性发现 {me['positive']}",
    ]
    if counties:
        counts = colour_counts(counties)
        per_colour = "，".join(f"{COLOUR_NAMES[c]} {counts[c]}" for c in COLOURS)
        lines += ["", f"**各县（市、区）**：{per_colour}，无数据 {counts['none']}"]
        for bad in ("red", "orange"):
            named = [c for c in counties if c["colour"] == bad]
            if not named:
                continue
            shown = "、".join(f"{c['name']} {_shown(c['value'])}%" for c in named[:MAX_NAMED_COUNTIES])
            more = f" 等 {len(named)} 个" if len(named) > MAX_NAMED_COUNTIES else ""
            lines.append(f"- {COLOUR_NAMES[bad]}色：{shown}{more}")
    link = h5.public_url(f"{DASHBOARD_PATH}?campaign_id={campaign.id}&node_id={owner.id}")
    lines += ["", f"[查看指数看板]({link})"]
    return messages.markdown(title, "\n".join(lines))


def message_key(campaign_id: int, day: date) -> str:
    return f"control-index:{campaign_id}:{day.isoformat()}"


def snapshot_and_push(now: datetime | None = None) -> dict[str, Any]:
    """The daily job: snapshot every active campaign's index for the China day of `now` and push it to the owner's
    chat once. Each campaign commits on its own; a failing one is logged and the job fails after the others ran."""
    now = now or utcnow()
    day = china_day(now)
    session = db.session()
    campaign_ids = session.scalars(sa.select(Campaign.id).where(Campaign.state == "active").order_by(Campaign.id)).all()
    result = {"day": day.isoformat(), "campaigns": 0, "rows": 0, "pushed": 0, "unrouted": 0}
    failed = []
    for campaign_id in campaign_ids:
        try:
            done = _snapshot_campaign(session, campaign_id, now, day)
            session.commit()
        except Exception:
            session.rollback()
            failed.append(campaign_id)
            log.exception("daily index of a campaign failed", extra={"job": "precision_control.daily_index"})
            continue
        result["campaigns"] += 1
        for key in ("rows", "pushed", "unrouted"):
            result[key] += done[key]
    log.info("daily index done", extra={"job": "precision_control.daily_index", "result": result})
    if failed:
        raise RuntimeError(f"daily index failed for campaigns {failed}")
    return result


def _snapshot_campaign(session: orm.Session, campaign_id: int, now: datetime, day: date) -> dict[str, int]:
    campaign = session.get(Campaign, campaign_id)
    owner = session.get(OrgNode, campaign.owner_node_id) if campaign else None
    if campaign is None or owner is None:
        return {"rows": 0, "pushed": 0, "unrouted": 0}
    figures = compute(session, campaign, owner, now)
    nodes = snapshot(session, figures, day)
    done = {"rows": len(nodes), "pushed": 0, "unrouted": 0}
    key = message_key(campaign.id, day)
    if session.scalar(sa.select(ControlNotice.id).where(ControlNotice.message_key == key)) is not None:
        return done  # already pushed today: a re-run only refreshes the snapshot
    route = route_for(owner.path, routes_by_node(session))
    if route is None:
        log.warning("no chat at or above a campaign's owner; daily index not pushed", extra={"action": "unrouted"})
        done["unrouted"] = 1
        return done
    counties = [figures.entry(n) for n in nodes if n.level == "county_bureau"]
    outbox.enqueue_message(
        "robot_group",
        daily_message(figures, counties, day),
        idempotency_key=key,
        target=route.conversation_id,
        db=session,
    )
    session.add(
        ControlNotice(
            campaign_id=campaign.id,
            kind="daily_index",
            node_id=owner.id,
            level=0,
            conversation_id=route.conversation_id,
            task_count=figures.at(owner).tasks,
            day=day,
            message_key=key,
            sent_at=now,
        )
    )
    done["pushed"] = 1
    return done


def init_app(app: Flask) -> None:
    from mini_apps.precision_control import index_routes
    from workbench.api import register_blueprint

    register_blueprint(app, index_routes.bp)
    queue = app.extensions["workbench.queue"]
    queue.every(DAILY_SECONDS, snapshot_and_push, name="precision_control.daily_index", offset=DAILY_OFFSET)
