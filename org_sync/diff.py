"""The apply half of a full sync: diff the staged tree against the live tables and write the difference.

Everything happens inside the caller's transaction, so readers see the old tree or the new one: creates, renames,
moves (paths of whole subtrees recomputed), other updates, soft deletes and restores of nodes; creates, updates,
soft deletes and restores of members; added, removed and changed memberships; and the change log of all of it.
Nodes (≤ ~40,000 a province) are diffed in Python, members and memberships (~300,000) set-based in SQL so they
are never loaded into memory. Before anything is written the deletion guard compares what would be soft-deleted
with `max_share` of what is live and raises `Refused`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from org_sync.apply import tree_lock_key
from org_sync.classify import classify, load_rules
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode
from org_sync.staging import OrgStageDept, OrgStageMembership, OrgStageUser
from workbench.db import utcnow

MEMBER_FIELDS = ("unionid", "name", "title", "job_number", "mobile_masked", "active", "is_admin", "is_boss")
FLUSH_ROWS = 1000  # rows per executemany batch of updates and change-log inserts
# SQLAlchemy keeps the row count of UPDATE and DELETE only; INSERT … SELECT needs this to report its own, instead
# of a second SELECT count(*) of the same rows (seconds at province scale).
COUNTED = {"preserve_rowcount": True}

Stage = OrgStageDept.__table__
StageUser = OrgStageUser.__table__
StageMembership = OrgStageMembership.__table__
Nodes = OrgNode.__table__
Members = OrgMember.__table__
Memberships = OrgMembership.__table__
Changes = OrgChange.__table__


@dataclass(frozen=True)
class Refusal:
    """What the deletion guard saw: how many members and nodes would go, of how many live, against the limit."""

    members_gone: int
    members_live: int
    nodes_gone: int
    nodes_live: int
    max_share: float

    @property
    def members_share(self) -> float:
        return self.members_gone / self.members_live if self.members_live else 0.0

    @property
    def nodes_share(self) -> float:
        return self.nodes_gone / self.nodes_live if self.nodes_live else 0.0


class Refused(Exception):
    """The deletion guard refused the run; nothing was written. `args` are `(reason, counts)`."""

    def __init__(self, reason: str, counts: dict[str, Any], refusal: Refusal) -> None:
        super().__init__(reason, counts)
        self.reason, self.counts, self.refusal = reason, counts, refusal


def apply_staged(conn: Connection, run_id: int, corp_id: str, max_share: float) -> dict[str, Any]:
    """Everything the run changes, inside the caller's transaction; raises `Refused` before writing if the
    deletion guard trips."""
    unfinished = conn.execute(
        sa.select(sa.func.count())
        .select_from(Stage)
        .where(Stage.c.run_id == run_id, sa.or_(~Stage.c.listed, ~Stage.c.paged, Stage.c.wants_detail))
    ).scalar_one()
    if unfinished:
        raise RuntimeError(f"run {run_id}: {unfinished} departments not fully fetched; refusing to apply")
    if conn.dialect.name == "postgresql":  # event handlers moving nodes meanwhile would leave stale paths
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(tree_lock_key(corp_id))))
        # Staging was filled since autovacuum last looked: with its stale statistics the planner sometimes joined
        # the memberships by nested loops (the same city apply took 2.7 s or 11.9 s).
        conn.exec_driver_sql("ANALYZE org_stage_depts, org_stage_users, org_stage_memberships")
        # The joins below hash a province's 300,000 members and positions: in memory, not in batches on disk.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    now = utcnow()
    staged = {
        row.dept_id: row
        for row in conn.execute(
            sa.select(
                Stage.c.dept_id,
                Stage.c.parent_dept_id,
                Stage.c.name,
                Stage.c.sort_order,
                Stage.c.has_order,
                Stage.c.depth,
                Stage.c.code,
            ).where(Stage.c.run_id == run_id)
        )
    }
    live = {
        row.dept_id: row
        for row in conn.execute(
            sa.select(
                Nodes.c.id,
                Nodes.c.dept_id,
                Nodes.c.parent_id,
                Nodes.c.name,
                Nodes.c.sort_order,
                Nodes.c.code,
                Nodes.c.level,
                Nodes.c.layer,
                Nodes.c.level_source,
                Nodes.c.level_override,
                Nodes.c.path,
                Nodes.c.depth,
                Nodes.c.deleted_at,
            ).where(Nodes.c.corp_id == corp_id)
        )
    }

    # The deletion guard, before anything is written.
    live_nodes = sum(1 for r in live.values() if r.deleted_at is None)
    nodes_gone = [r for r in live.values() if r.deleted_at is None and r.dept_id not in staged]
    member_gone_q = sa.select(sa.func.count()).where(
        Members.c.corp_id == corp_id,
        Members.c.deleted_at.is_(None),
        ~sa.exists().where(StageUser.c.run_id == run_id, StageUser.c.userid == Members.c.userid),
    )
    members_gone = conn.execute(member_gone_q).scalar_one()
    live_members = conn.execute(
        sa.select(sa.func.count()).where(Members.c.corp_id == corp_id, Members.c.deleted_at.is_(None))
    ).scalar_one()
    for what, gone, total in (("members", members_gone, live_members), ("nodes", len(nodes_gone), live_nodes)):
        if total and gone / total > max_share:
            reason = (
                f"would delete {gone} of {total} {what} ({gone / total:.1%}), more than the allowed {max_share:.1%}; "
                "nothing was changed"
            )
            would = {"would_delete": {"members": members_gone, "nodes": len(nodes_gone)}}
            raise Refused(reason, would, Refusal(members_gone, live_members, len(nodes_gone), live_nodes, max_share))

    counts: dict[str, Any] = {"nodes": _apply_nodes(conn, run_id, corp_id, staged, live, nodes_gone, now)}
    counts["memberships"] = {}
    _membership_removals(conn, run_id, corp_id, now, counts["memberships"])
    counts["members"] = _apply_members(conn, run_id, corp_id, now)
    if conn.dialect.name == "postgresql":
        # The planner does not know yet of the nodes and members created above (a first sync: 300,000 rows where it
        # believes in a few hundred) and joined them to the positions by nested loops, then the insert took 14 s.
        conn.exec_driver_sql("ANALYZE org_nodes, org_members")
    _membership_additions(conn, run_id, corp_id, now, counts["memberships"])
    return counts


def _change(corp_id: str, entity: str, key: Any, action: str, changes: dict, run_id: int, now: Any) -> dict:
    return {
        "corp_id": corp_id,
        "entity": entity,
        "entity_key": str(key),
        "action": action,
        "changes": changes,
        "run_id": run_id,
        "event_id": None,
        "at": now,
    }


def _apply_nodes(
    conn: Connection,
    run_id: int,
    corp_id: str,
    staged: dict[int, Any],
    live: dict[int, Any],
    gone: list[Any],
    now: Any,
) -> dict[str, int]:
    """Nodes: walk the staged tree top-down to compute parent, path, depth and level of every node; insert the
    new ones and write only what differs of the others."""
    counts = dict.fromkeys(("created", "renamed", "moved", "updated", "reclassified", "deleted", "restored"), 0)
    changes: list[dict] = []
    # New nodes get their ids first, so each is inserted once with its path (made of ids), instead of inserted
    # with a placeholder path and then updated: at province scale the update alone took 4 s.
    new = [d for d in staged if d not in live]
    ids = {d: row.id for d, row in live.items()} | dict(zip(new, _new_node_ids(conn, len(new)), strict=True))
    dept_of = {node_id: dept for dept, node_id in ids.items()}
    rules = load_rules()
    level: dict[int, str] = {}
    path: dict[int, str] = {}
    creates: list[dict] = []
    updates: list[dict] = []
    for row in sorted(staged.values(), key=lambda r: (r.depth, r.dept_id)):
        d, parent = row.dept_id, row.parent_dept_id
        node_id = ids[d]
        old = live.get(d)
        path[d] = path.get(parent, "/") + f"{node_id}/"
        override = old.level_override if old is not None else None
        c = classify(row.name, row.code, level.get(parent), row.depth, override=override, rules=rules)
        level[d] = c.level
        # Without department/get, a node keeps its stored order (DingTalk's, from an event or an earlier detail).
        order = row.sort_order if (row.has_order or old is None) else old.sort_order
        code = row.code if (row.has_order or old is None) else old.code
        target = {
            "parent_id": ids.get(parent) if parent is not None else None,
            "name": row.name,
            "sort_order": order,
            "code": code,
            "level": c.level,
            "layer": c.layer,
            "level_source": c.source,
            "path": path[d],
            "depth": row.depth,
            "deleted_at": None,
        }
        if old is None:
            creates.append(
                {"id": node_id, "corp_id": corp_id, "dept_id": d, "level_override": None, **target}
                | {"created_at": now, "updated_at": now}
            )
            changes.append(
                _change(corp_id, "node", d, "create", {"name": [None, row.name], "parent": [None, parent]}, run_id, now)
            )
            continue
        differs = {k: v for k, v in target.items() if getattr(old, k) != v}
        if old.level_source != c.source and "level" not in differs:
            differs["level_source"] = c.source
        if not differs:
            continue
        updates.append(_node_update(node_id, target, now))
        if old.deleted_at is not None:
            counts["restored"] += 1
            changes.append(_change(corp_id, "node", d, "restore", {"deleted": [True, False]}, run_id, now))
        if "name" in differs:
            counts["renamed"] += 1
            changes.append(_change(corp_id, "node", d, "rename", {"name": [old.name, row.name]}, run_id, now))
        if "parent_id" in differs:
            counts["moved"] += 1
            old_parent = dept_of.get(old.parent_id)
            changes.append(_change(corp_id, "node", d, "move", {"parent": [old_parent, parent]}, run_id, now))
        other = {k: [getattr(old, k), differs[k]] for k in ("code", "level") if k in differs}
        if "level" in other:
            counts["reclassified"] += 1
        if other:
            counts["updated"] += 1
            changes.append(_change(corp_id, "node", d, "update", other, run_id, now))
    if creates:  # parents before children (the loop goes by depth): each batch's parents are already there
        conn.execute(Nodes.insert(), creates)
        counts["created"] = len(creates)
    if updates:
        conn.execute(
            Nodes.update()
            .where(Nodes.c.id == sa.bindparam("_id"))
            .values({k[2:]: sa.bindparam(k) for k in updates[0] if k != "_id"}),
            updates,
        )
    if gone:
        conn.execute(
            Nodes.update().where(Nodes.c.id == sa.bindparam("_id")).values(deleted_at=now, updated_at=now),
            [{"_id": r.id} for r in gone],
        )
        counts["deleted"] = len(gone)
        changes.extend(
            _change(corp_id, "node", r.dept_id, "delete", {"name": [r.name, None]}, run_id, now) for r in gone
        )
    _insert_changes(conn, changes)
    return counts


def _new_node_ids(conn: Connection, n: int) -> list[int]:
    """`n` unused ids of `org_nodes`: from its sequence on PostgreSQL; after the largest id on SQLite, whose
    writers are serialised (a concurrent insert would fail this transaction, to be applied again on resume)."""
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        return list(
            conn.execute(
                sa.select(sa.func.nextval(sa.func.pg_get_serial_sequence("org_nodes", "id"))).select_from(
                    sa.func.generate_series(1, n)
                )
            ).scalars()
        )
    largest = conn.execute(sa.select(sa.func.coalesce(sa.func.max(Nodes.c.id), 0))).scalar_one()
    return list(range(largest + 1, largest + 1 + n))


def _node_update(node_id: int, target: dict[str, Any], now: Any) -> dict[str, Any]:
    """Executemany parameters of one node's update (bind names must differ from the column names)."""
    return {"_id": node_id, **{f"v_{k}": v for k, v in target.items()}, "v_updated_at": now}


def _insert_changes(conn: Connection, rows: Iterable[dict]) -> None:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= FLUSH_ROWS:
            conn.execute(Changes.insert(), batch)
            batch = []
    if batch:
        conn.execute(Changes.insert(), batch)


def _json_pair(conn: Connection, key: str, old: Any, new: Any) -> sa.ColumnElement:
    """SQL for `{key: [old, new]}` built per row (jsonb on PostgreSQL, JSON text on SQLite)."""
    if conn.dialect.name == "postgresql":
        return sa.func.jsonb_build_object(key, sa.func.jsonb_build_array(old, new))
    return sa.func.json_object(key, sa.func.json_array(old, new))


def _change_select(corp_id: str, entity: str, key: Any, action: str, changes: Any, run_id: int, now: Any) -> list:
    """The columns of an `org_changes` INSERT … SELECT, in `CHANGE_COLUMNS` order."""
    return [
        sa.literal(corp_id),
        sa.literal(entity),
        key,
        sa.literal(action),
        changes,
        sa.literal(run_id),
        sa.literal(now, OrgChange.at.type),
    ]


CHANGE_COLUMNS = ["corp_id", "entity", "entity_key", "action", "changes", "run_id", "at"]


def _apply_members(conn: Connection, run_id: int, corp_id: str, now: Any) -> dict[str, int]:
    """Members, set-based: updates and restores streamed in batches, then deletes and creates in one statement
    each. Creates come last: the other two concern only members stored before this run, and on a first sync they
    then scan an empty table instead of the 300,000 rows just inserted (whose statistics are not yet known)."""
    counts = dict.fromkeys(("created", "updated", "deleted", "restored"), 0)
    s, m = StageUser.c, Members.c
    null = sa.null()

    differs = sa.or_(m.deleted_at.is_not(None), *(m[f].is_distinct_from(s[f]) for f in MEMBER_FIELDS))
    changed = conn.execute(
        sa.select(
            m.id,
            m.userid,
            m.deleted_at,
            *(m[f] for f in MEMBER_FIELDS),
            *(s[f].label(f"new_{f}") for f in MEMBER_FIELDS),
        )
        .join_from(Members, StageUser, sa.and_(s.run_id == run_id, s.userid == m.userid))
        .where(m.corp_id == corp_id, differs)
    )
    updates: list[dict] = []
    changes: list[dict] = []

    def flush() -> None:
        if updates:
            conn.execute(
                Members.update()
                .where(m.id == sa.bindparam("_id"))
                .values(deleted_at=None, updated_at=now, **{f: sa.bindparam(f"v_{f}") for f in MEMBER_FIELDS}),
                updates,
            )
            _insert_changes(conn, changes)
            updates.clear()
            changes.clear()

    for row in changed.mappings().fetchall() if conn.dialect.name == "sqlite" else changed.mappings():
        diff = {f: [row[f], row[f"new_{f}"]] for f in MEMBER_FIELDS if row[f] != row[f"new_{f}"]}
        if row["deleted_at"] is not None:
            counts["restored"] += 1
            changes.append(
                _change(corp_id, "member", row["userid"], "restore", {"deleted": [True, False]}, run_id, now)
            )
        if diff:
            counts["updated"] += 1
            changes.append(_change(corp_id, "member", row["userid"], "update", diff, run_id, now))
        updates.append({"_id": row["id"], **{f"v_{f}": row[f"new_{f}"] for f in MEMBER_FIELDS}})
        if len(updates) >= FLUSH_ROWS:
            flush()
    flush()

    gone = sa.and_(
        m.corp_id == corp_id,
        m.deleted_at.is_(None),
        ~sa.exists().where(s.run_id == run_id, s.userid == m.userid),
    )
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id, "member", m.userid, "delete", _json_pair(conn, "name", m.name, null), run_id, now
                )
            ).where(gone),
        )
    )
    counts["deleted"] = conn.execute(Members.update().where(gone).values(deleted_at=now, updated_at=now)).rowcount

    missing = ~sa.exists().where(m.corp_id == corp_id, m.userid == s.userid)
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id, "member", s.userid, "create", _json_pair(conn, "name", null, s.name), run_id, now
                )
            ).where(s.run_id == run_id, missing),
        )
    )
    counts["created"] = conn.execute(
        Members.insert().from_select(
            ["corp_id", "userid", *MEMBER_FIELDS, "deleted_at", "created_at", "updated_at"],
            sa.select(
                sa.literal(corp_id),
                s.userid,
                *(s[f] for f in MEMBER_FIELDS),
                sa.null(),
                sa.literal(now, OrgMember.created_at.type),
                sa.literal(now, OrgMember.updated_at.type),
            ).where(s.run_id == run_id, missing),
        ),
        execution_options=COUNTED,
    ).rowcount
    return counts


def _desired_match(run_id: int) -> sa.ColumnElement[bool]:
    """The staged pair of the enclosing query's member and node (auto-correlated to both)."""
    sm = StageMembership.c
    return sa.exists().where(sm.run_id == run_id, sm.userid == Members.c.userid, sm.dept_id == Nodes.c.dept_id)


def _membership_removals(conn: Connection, run_id: int, corp_id: str, now: Any, counts: dict[str, int]) -> None:
    """Positions no longer in DingTalk (and those of departed members): logged, then deleted."""
    ms, m, n = Memberships.c, Members.c, Nodes.c
    key = m.userid.concat("@").concat(sa.cast(n.dept_id, sa.String))
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id,
                    "membership",
                    key,
                    "delete",
                    _json_pair(conn, "dept", n.dept_id, sa.null()),
                    run_id,
                    now,
                )
            )
            .select_from(Memberships)
            .join(Members, m.id == ms.member_id)
            .join(Nodes, n.id == ms.node_id)
            .where(m.corp_id == corp_id, ~_desired_match(run_id)),
        )
    )
    corp_members = sa.select(m.id).where(m.corp_id == corp_id).scalar_subquery()
    counts["removed"] = conn.execute(
        Memberships.delete().where(
            ms.member_id.in_(corp_members),
            ~sa.exists().where(
                StageMembership.c.run_id == run_id,
                m.id == ms.member_id,
                n.id == ms.node_id,
                StageMembership.c.userid == m.userid,
                StageMembership.c.dept_id == n.dept_id,
            ),
        )
    ).rowcount


def _membership_additions(conn: Connection, run_id: int, corp_id: str, now: Any, counts: dict[str, int]) -> None:
    """New positions (logged for members who existed before this run; a new member's creation implies them),
    then leader flags and orders that changed."""
    sm, ms, m, n = StageMembership.c, Memberships.c, Members.c, Nodes.c
    joined = (
        sa.select(
            m.id.label("member_id"),
            n.id.label("node_id"),
            sm.is_leader,
            sm.sort_order,
            m.userid,
            n.dept_id,
            m.created_at,
        )
        .select_from(StageMembership)
        .join(Members, sa.and_(m.corp_id == corp_id, m.userid == sm.userid))
        .join(Nodes, sa.and_(n.corp_id == corp_id, n.dept_id == sm.dept_id))
        .where(sm.run_id == run_id, ~sa.exists().where(ms.member_id == m.id, ms.node_id == n.id))
    )
    existing = joined.where(m.created_at != sa.literal(now, OrgMember.created_at.type)).subquery()
    key = existing.c.userid.concat("@").concat(sa.cast(existing.c.dept_id, sa.String))
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id,
                    "membership",
                    key,
                    "create",
                    _json_pair(conn, "dept", sa.null(), existing.c.dept_id),
                    run_id,
                    now,
                )
            ),
        )
    )
    added = joined.with_only_columns(m.id, n.id, sm.is_leader, sm.sort_order)
    counts["added"] = conn.execute(
        Memberships.insert().from_select(["member_id", "node_id", "is_leader", "sort_order"], added),
        execution_options=COUNTED,
    ).rowcount
    staged_pair = sa.and_(
        sm.run_id == run_id,
        m.id == ms.member_id,
        n.id == ms.node_id,
        sm.userid == m.userid,
        sm.dept_id == n.dept_id,
    )

    def staged_value(column: sa.Column) -> sa.ScalarSelect:
        return sa.select(column).where(staged_pair).correlate(Memberships).scalar_subquery()

    counts["updated"] = conn.execute(
        Memberships.update()
        .where(
            sa.exists()
            .where(staged_pair, sa.or_(sm.is_leader != ms.is_leader, sm.sort_order != ms.sort_order))
            .correlate(Memberships)
        )
        .values(is_leader=staged_value(sm.is_leader), sort_order=staged_value(sm.sort_order))
    ).rowcount
