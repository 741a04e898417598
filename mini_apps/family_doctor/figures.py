"""Signing figures for supervision (签约服务覆盖率, 重点人群签约覆盖率, 续约率, overdue follow-ups; domain.md §5.3),
per institution and rolled up every level of the tree, and the service populations they are divided by.

How the figures are counted, on a day `on`:
- **signed**: residents with a contract in force on `on` (start ≤ on ≤ end, not terminated by then). A resident
  counts once, at the institution of the in-force contract that started last (a renewal may overlap the old one),
  so institutions add up exactly to their parents. `signed_by_tag` per key population (重点人群, `models.TAGS`);
  `signed_key_population` counts residents with any key tag once (one person is often in several).
- **populations** (the denominators) are reported per institution (lead hospital or member institution) and year
  (`ServicePopulation`): "all" is 辖区常住人口, a tag code that key population, "key_population" their
  deduplicated total. A node's population is the sum of what the institutions in its subtree reported; parents do
  not report their own (the PUT refuses non-institutions), so nothing counts twice. An institution with teams but
  no "all" row for the year is listed in `completeness` of itself and of every node above it: its residents are
  counted but its population is not, so the coverage above it reads high until it reports.
- **renewals** (续约率): the person's last contract that ended in [on − 365 days, on] (the cycle that just ended),
  not terminated (a terminated contract ended early, it was not up for renewal) → `renewal_due`; `renewed` when
  the person has a later contract on any team (linked by `previous_id`, or starting after it started).
- **overdue follow-ups**: open follow-ups due before `on`, at the institution of their team; residents with one
  are counted once per node.
- Every rate above an institution is sum(numerators) ÷ sum(denominators), never a mean of rates; a rate is None
  where its denominator is missing or 0.

Everything is a handful of set-based queries (both SQLite and PostgreSQL): per institution, then joined to every
ancestor by materialised-path prefix and summed there; no loop over residents in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor.models import TAGS, Contract, FamilyDoctorTeam, FollowUp, Resident, ServicePopulation
from mini_apps.family_doctor.service import CHINA, today
from org_sync import rollup
from org_sync.models import OrgNode
from workbench import audit, db
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.errors import ApiError

# The levels figures are reported at (internal departments hold no teams of their own).
ALL, KEY_POPULATION = "all", "key_population"
CATEGORIES = {ALL: "辖区常住人口", KEY_POPULATION: "重点人群（去重）", **TAGS}
READER_ROLES = ("admin", "institution_admin", "supervisor")
POPULATION_EDITORS = ("admin", "institution_admin")
RENEWAL_WINDOW = timedelta(days=365)


@dataclass
class NodeFigures:
    """The figures of one org node: its whole subtree (an institution: itself and any institutions under it)."""

    node_id: int
    name: str
    level: str
    parent_id: int | None
    path: str
    signed: int = 0
    signed_by_tag: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TAGS, 0))
    signed_key_population: int = 0
    population: int | None = None
    population_by_tag: dict[str, int] = field(default_factory=dict)  # only the tags reported under the node
    key_population: int | None = None
    coverage: float | None = None
    coverage_by_tag: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(TAGS))
    key_population_coverage: float | None = None
    renewal_due: int = 0
    renewed: int = 0
    renewal_rate: float | None = None
    overdue_follow_ups: int = 0
    residents_with_overdue_follow_up: int = 0
    # Institutions under the node (itself included) with teams but no "all" population for the year.
    completeness: list[int] = field(default_factory=list)


def _rate(numerator: int, denominator: int | None) -> float | None:
    return numerator / denominator if denominator else None


def _tag_clause(tags: sa.ColumnElement[str], tag: str) -> sa.ColumnElement[bool]:
    return tags.contains(f",{tag},", autoescape=True)


def signing_figures(
    session: orm.Session, *, on: date, year: int | None = None, root_ids: Sequence[int] | None = None
) -> list[NodeFigures]:
    """Figures of every live node of `rollup.REPORTED_LEVELS` that has teams or populations under it — limited to
    the subtrees of `root_ids` when given (the roots are always listed) — ordered by path (parents first)."""
    year = year or on.year
    anchor = rollup.anchor(session, root_ids)
    if anchor is None:
        return []

    # Which nodes: those with a team or a population row of the year under them, and the roots.
    with_data = sa.union(
        sa.select(FamilyDoctorTeam.institution_id.label("unit_id")),
        sa.select(ServicePopulation.node_id.label("unit_id")).where(ServicePopulation.year == year),
    ).subquery()
    listed = sa.select(anchor.c.node_id).where(anchor.c.unit_id.in_(sa.select(with_data.c.unit_id)))
    wanted = OrgNode.id.in_(listed)
    if root_ids is not None:
        wanted = sa.or_(wanted, sa.and_(OrgNode.id.in_(root_ids), OrgNode.level.in_(rollup.REPORTED_LEVELS)))
    rows = session.execute(
        sa.select(OrgNode.id, OrgNode.name, OrgNode.level, OrgNode.parent_id, OrgNode.path)
        .where(wanted, OrgNode.deleted_at.is_(None))
        .order_by(OrgNode.path)
    ).all()
    figures = {row.id: NodeFigures(row.id, row.name, row.level, row.parent_id, row.path) for row in rows}
    if not figures:
        return []

    _add_signed(session, anchor, figures, on)
    _add_populations(session, anchor, figures, year)
    _add_renewals(session, anchor, figures, on)
    _add_follow_ups(session, anchor, figures, on)
    _add_completeness(session, anchor, figures, year)

    for item in figures.values():
        item.coverage = _rate(item.signed, item.population)
        item.coverage_by_tag = {tag: _rate(item.signed_by_tag[tag], item.population_by_tag.get(tag)) for tag in TAGS}
        item.key_population_coverage = _rate(item.signed_key_population, item.key_population)
        item.renewal_rate = _rate(item.renewed, item.renewal_due)
    return list(figures.values())


def _add_signed(session: orm.Session, anchor: sa.CTE, figures: dict[int, NodeFigures], on: date) -> None:
    # Terminated on day D (China time): in force until the day before D.
    next_day = datetime.combine(on + timedelta(days=1), time(), CHINA)
    in_force = sa.and_(
        Contract.start_date <= on,
        Contract.end_date >= on,
        sa.or_(Contract.status != "terminated", Contract.terminated_at >= next_day),
    )
    ranked = (
        sa.select(
            Contract.resident_id,
            FamilyDoctorTeam.institution_id.label("unit_id"),
            Resident.tags,
            sa.func.row_number()
            .over(partition_by=Contract.resident_id, order_by=(Contract.start_date.desc(), Contract.id.desc()))
            .label("rank"),
        )
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(Resident, Resident.id == Contract.resident_id)
        .where(in_force)
        .subquery()
    )
    tags = ranked.c.tags
    columns = [sa.func.count().label("signed")]
    columns += [sa.func.sum(sa.case((_tag_clause(tags, tag), 1), else_=0)).label(tag) for tag in TAGS]
    any_tag = sa.or_(*(_tag_clause(tags, tag) for tag in TAGS))
    columns.append(sa.func.sum(sa.case((any_tag, 1), else_=0)).label("key"))
    stmt = (
        sa.select(anchor.c.node_id, *columns)
        .select_from(ranked)
        .join(anchor, anchor.c.unit_id == ranked.c.unit_id)
        .where(ranked.c.rank == 1, anchor.c.node_id.in_(list(figures)))
        .group_by(anchor.c.node_id)
    )
    for row in session.execute(stmt).mappings():
        item = figures[row["node_id"]]
        item.signed = int(row["signed"])
        item.signed_by_tag = {tag: int(row[tag] or 0) for tag in TAGS}
        item.signed_key_population = int(row["key"] or 0)


def _add_populations(session: orm.Session, anchor: sa.CTE, figures: dict[int, NodeFigures], year: int) -> None:
    stmt = (
        sa.select(anchor.c.node_id, ServicePopulation.category, sa.func.sum(ServicePopulation.population))
        .select_from(ServicePopulation)
        .join(anchor, anchor.c.unit_id == ServicePopulation.node_id)
        .where(ServicePopulation.year == year, anchor.c.node_id.in_(list(figures)))
        .group_by(anchor.c.node_id, ServicePopulation.category)
    )
    for node_id, category, total in session.execute(stmt):
        item = figures[node_id]
        if category == ALL:
            item.population = int(total)
        elif category == KEY_POPULATION:
            item.key_population = int(total)
        elif category in TAGS:
            item.population_by_tag[category] = int(total)


def renewal_cycles(on: date) -> tuple[sa.Subquery, sa.Exists]:
    """The cycles up for renewal on `on` (each person's last non-terminated contract that ended in the year up to
    it: `rank == 1`, with its team's institution as `unit_id`) and the condition that one was renewed. Shared with
    supervision's per-unit intake, so both count renewals alike."""
    ranked = (
        sa.select(
            Contract.id,
            Contract.resident_id,
            Contract.start_date,
            FamilyDoctorTeam.institution_id.label("unit_id"),
            sa.func.row_number()
            .over(partition_by=Contract.resident_id, order_by=(Contract.end_date.desc(), Contract.id.desc()))
            .label("rank"),
        )
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .where(Contract.end_date >= on - RENEWAL_WINDOW, Contract.end_date <= on, Contract.status != "terminated")
        .subquery()
    )
    later = orm.aliased(Contract, name="later")
    renewed = (
        sa.select(later.id)
        .where(
            later.resident_id == ranked.c.resident_id,
            later.id != ranked.c.id,
            sa.or_(later.previous_id == ranked.c.id, later.start_date > ranked.c.start_date),
        )
        .exists()
    )
    return ranked, renewed


def _add_renewals(session: orm.Session, anchor: sa.CTE, figures: dict[int, NodeFigures], on: date) -> None:
    ranked, renewed = renewal_cycles(on)
    stmt = (
        sa.select(anchor.c.node_id, sa.func.count(), sa.func.sum(sa.case((renewed, 1), else_=0)))
        .select_from(ranked)
        .join(anchor, anchor.c.unit_id == ranked.c.unit_id)
        .where(ranked.c.rank == 1, anchor.c.node_id.in_(list(figures)))
        .group_by(anchor.c.node_id)
    )
    for node_id, due, done in session.execute(stmt):
        figures[node_id].renewal_due, figures[node_id].renewed = int(due), int(done or 0)


def _add_follow_ups(session: orm.Session, anchor: sa.CTE, figures: dict[int, NodeFigures], on: date) -> None:
    stmt = (
        sa.select(anchor.c.node_id, sa.func.count(FollowUp.id), sa.func.count(sa.distinct(FollowUp.resident_id)))
        .select_from(FollowUp)
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == FollowUp.team_id)
        .join(anchor, anchor.c.unit_id == FamilyDoctorTeam.institution_id)
        .where(FollowUp.done_on.is_(None), FollowUp.due_date < on, anchor.c.node_id.in_(list(figures)))
        .group_by(anchor.c.node_id)
    )
    for node_id, count, residents in session.execute(stmt):
        figures[node_id].overdue_follow_ups, figures[node_id].residents_with_overdue_follow_up = count, residents


def _add_completeness(session: orm.Session, anchor: sa.CTE, figures: dict[int, NodeFigures], year: int) -> None:
    has_team = sa.select(FamilyDoctorTeam.id).where(
        FamilyDoctorTeam.institution_id == anchor.c.unit_id, FamilyDoctorTeam.active
    )
    has_population = sa.select(ServicePopulation.node_id).where(
        ServicePopulation.node_id == anchor.c.unit_id,
        ServicePopulation.year == year,
        ServicePopulation.category == ALL,
    )
    stmt = (
        sa.select(anchor.c.node_id, anchor.c.unit_id)
        .select_from(anchor)
        .join(OrgNode, OrgNode.id == anchor.c.unit_id)
        .where(
            has_team.exists(),
            ~has_population.exists(),
            OrgNode.deleted_at.is_(None),
            anchor.c.node_id.in_(list(figures)),
        )
        .order_by(anchor.c.node_id, OrgNode.path)
    )
    for node_id, unit_id in session.execute(stmt):
        figures[node_id].completeness.append(unit_id)


# -- for a principal ---------------------------------------------------------------------------------------------


def _roots(principal: Principal, session: orm.Session, node_id: int | None, roles: tuple[str, ...]) -> list[int] | None:
    """The subtrees the caller may read figures of: the node asked for (404 outside the scope), else the whole
    scope (None: everything)."""
    scope = principal.scope(*roles)
    if node_id is not None:
        node = session.get(OrgNode, node_id)
        if node is None or node.deleted_at is not None or not scope.covers_path(node.path):
            raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="node_id")
        return [node.id]
    if scope.everything:
        return None
    # A scope path is "/root/.../id/": its last id is the subtree's root.
    return [int(path.strip("/").split("/")[-1]) for path in scope.paths]


def figures_for(
    principal: Principal,
    *,
    on: date | None = None,
    year: int | None = None,
    node_id: int | None = None,
    session: orm.Session | None = None,
) -> list[NodeFigures]:
    """`signing_figures` limited to what the principal administers or supervises (aggregates only: no resident
    data, so not audited as a read of patient data)."""
    session = session or db.session()
    roots = _roots(principal, session, node_id, READER_ROLES)
    if roots == []:
        return []
    return signing_figures(session, on=on or today(), year=year, root_ids=roots)


def figures_view(principal: Principal, query: Mapping[str, Any], session: orm.Session | None = None) -> dict:
    """The API's answer: the figures with each incomplete institution named."""
    on = query.get("on") or today()
    year = query.get("year") or on.year
    items = figures_for(principal, on=on, year=year, node_id=query.get("node_id"), session=session)
    names = {item.node_id: item.name for item in items}
    views = []
    for item in items:
        view = asdict(item)
        view["completeness"] = [{"node_id": i, "name": names.get(i, "")} for i in item.completeness]
        views.append(view)
    return {"on": on, "year": year, "items": views}


# -- service populations -----------------------------------------------------------------------------------------


def _population_view(row: ServicePopulation, node: OrgNode) -> dict[str, Any]:
    return {
        "node_id": node.id,
        "node_name": node.name,
        "year": row.year,
        "category": row.category,
        "category_name": CATEGORIES[row.category],
        "population": row.population,
        "updated_at": row.updated_at,
        "updated_by": row.updated_by,
    }


def set_population(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict[str, Any]:
    """Set one population figure of an institution (lead hospital or member institution) for a year: admins and
    institution admins whose subtree holds it. Audited with the old and new value."""
    session = session or db.session()
    node = session.get(OrgNode, data["node_id"])
    if node is None or node.deleted_at is not None or not principal.scope(*POPULATION_EDITORS).covers_path(node.path):
        raise ApiError("not_found", f"组织节点 {data['node_id']} 不存在", status=404, field="node_id")
    if node.level not in INSTITUTION_LEVELS:
        # Parents' figures are the sums of their institutions': a parent's own figure would count twice.
        raise ApiError(
            "validation_error", "服务人口按机构（医共体牵头单位或成员单位）填报", status=422, field="node_id"
        )
    if data["category"] not in CATEGORIES:
        raise ApiError("validation_error", "未知的人口类别", status=422, field="category")
    if data["population"] < 0:
        raise ApiError("validation_error", "人口数不能为负", status=422, field="population")
    row = session.get(ServicePopulation, (node.id, data["year"], data["category"]))
    previous = row.population if row is not None else None
    if row is None:
        row = ServicePopulation(node_id=node.id, year=data["year"], category=data["category"])
        session.add(row)
    row.population = data["population"]
    row.updated_at = db.utcnow()
    row.updated_by = principal.actor
    audit.record(
        principal,
        "family_doctor.population.update",
        resource_type="service_population",
        resource_id=f"{node.id}:{data['year']}:{data['category']}",
        node_id=node.id,
        detail={
            "year": data["year"],
            "category": data["category"],
            "population": data["population"],
            "previous": previous,
        },
        session=session,
    )
    session.commit()
    return _population_view(row, node)


def list_populations(
    principal: Principal, query: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """The population figures of a year reported under the caller's scope (or under `node_id` in it)."""
    session = session or db.session()
    year = query.get("year") or today().year
    roots = _roots(principal, session, query.get("node_id"), READER_ROLES)
    stmt = (
        sa.select(ServicePopulation, OrgNode)
        .join(OrgNode, OrgNode.id == ServicePopulation.node_id)
        .where(ServicePopulation.year == year)
        .order_by(OrgNode.path, ServicePopulation.category)
    )
    if roots is not None:
        if not roots:
            return {"year": year, "items": []}
        paths = session.scalars(sa.select(OrgNode.path).where(OrgNode.id.in_(roots))).all()
        stmt = stmt.where(sa.or_(sa.false(), *(OrgNode.path.startswith(path, autoescape=True) for path in paths)))
    return {"year": year, "items": [_population_view(row, node) for row, node in session.execute(stmt)]}
