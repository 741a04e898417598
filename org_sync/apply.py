"""Apply one DingTalk department or user to the stored tree: the single-row path of incremental sync.

Every function here makes the stored rows equal to what DingTalk says *now* about one entity, so applying the
same thing twice changes nothing the second time (events are delivered at least once and retried). They work
in the caller's session and never commit: an event handler commits once, after the whole event is applied.

Events arrive out of order: a user can be added to a department whose `org_dept_create` is still to come, or a
department be moved under one that, locally, still sits inside it. Whatever is missing or stale is fetched
through a `ContactSource` (DingTalk by default) before it is needed.

Every change writes `OrgChange` rows: entity, key, action and `{field: [old, new]}`.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from org_sync.classify import classify
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode
from workbench import db
from workbench.db import utcnow
from workbench.dingtalk.errors import DingTalkError
from workbench.privacy import mask_mobile

log = logging.getLogger(__name__)

USER_GONE_CODES = frozenset({"60121", "33012"})  # user/get: user not found, invalid userid (§2.2)
DEPT_GONE_CODES = frozenset({"60003"})  # department/get: department not found (§2.1)
MAX_FETCH_DEPTH = 64  # deeper than any real tree: guards recursion against an inconsistent source


class ContactSource(Protocol):
    """Where current contact data comes from; None means "does not exist (any more)"."""

    def department(self, dept_id: int) -> Mapping[str, Any] | None: ...

    def user(self, userid: str) -> Mapping[str, Any] | None: ...


class GatewaySource:
    """DingTalk through the gateway: `department/get` and `v2/user/get`, with "gone" codes mapped to None."""

    def department(self, dept_id: int) -> Mapping[str, Any] | None:
        from workbench.dingtalk import get_gateway

        try:
            return get_gateway().oapi("/topapi/v2/department/get", {"dept_id": dept_id})["result"]
        except DingTalkError as exc:
            if exc.code in DEPT_GONE_CODES:
                return None
            raise

    def user(self, userid: str) -> Mapping[str, Any] | None:
        from workbench.dingtalk import get_gateway

        try:
            return get_gateway().oapi("/topapi/v2/user/get", {"userid": userid})["result"]
        except DingTalkError as exc:
            if exc.code in USER_GONE_CODES:
                return None
            raise


# -- the change log ---------------------------------------------------------------------------------------------


def _record(
    corp_id: str,
    entity: str,
    key: str,
    action: str,
    changes: dict[str, list],
    event_id: str | None,
    run_id: int | None = None,
) -> None:
    db.session().add(
        OrgChange(
            corp_id=corp_id,
            entity=entity,
            entity_key=key[:128],
            action=action,
            changes=changes,
            event_id=event_id,
            run_id=run_id,
        )
    )


def _set_fields(row: object, values: Mapping[str, Any]) -> dict[str, list]:
    """Assign `values` to `row`, returning `{field: [old, new]}` for those that differ."""
    changes: dict[str, list] = {}
    for name, value in values.items():
        old = getattr(row, name)
        if old != value:
            changes[name] = [old, value]
            setattr(row, name, value)
    return changes


# -- departments ------------------------------------------------------------------------------------------------


def tree_lock_key(corp_id: str) -> int:
    """The PostgreSQL advisory-lock key that serialises structural writes of one corp's tree (shared with the
    full sync's apply step)."""
    digest = hashlib.blake2b(f"org_tree:{corp_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_tree(corp_id: str) -> None:
    """Serialise structural writes (creates, moves, removals) of one corp's tree until the transaction ends.

    A node's path is built from its parent's, so two workers moving overlapping subtrees at once would leave
    stale paths, and two creating the same department would collide. On PostgreSQL this takes a
    transaction-scoped advisory lock. SQLite admits one writer at a time, but pysqlite begins the transaction
    only at its first write, so what was read before it may be stale: a no-op write takes the writer lock now.
    Either way what was read before the lock is forgotten (the previous holder may have changed it)."""
    session = db.session()
    session.connection()  # begin the transaction the lock belongs to
    held = session.info.get("org_tree_lock")
    if held is not None and held[0] == corp_id and held[1]() is session.get_transaction() is not None:
        return
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(tree_lock_key(corp_id))))
    else:
        nodes = OrgNode.__table__
        session.execute(nodes.update().where(sa.false()).values(id=nodes.c.id))
    session.expire_all()
    session.info["org_tree_lock"] = (corp_id, weakref.ref(session.get_transaction()))


def node_by_dept(corp_id: str, dept_id: int) -> OrgNode | None:
    """The stored node of a DingTalk department, live or soft-deleted."""
    return db.session().scalar(sa.select(OrgNode).where(OrgNode.corp_id == corp_id, OrgNode.dept_id == dept_id))


def _parent_dept_id(dept: Mapping[str, Any]) -> int | None:
    parent = dept.get("parent_id")
    return int(parent) if parent not in (None, "", 0, "0") else None


def ensure_department(
    corp_id: str,
    dept_id: int,
    *,
    event_id: str | None,
    source: ContactSource | None = None,
    run_id: int | None = None,
    _depth: int = 0,
) -> OrgNode | None:
    """The live node of `dept_id`, fetching it (and its unknown ancestors) when it is missing or deleted here;
    None when DingTalk does not know it either."""
    node = node_by_dept(corp_id, dept_id)
    if node is not None and node.deleted_at is None:
        return node
    source = source or GatewaySource()
    dept = source.department(dept_id)
    if dept is None:
        return None
    return upsert_department(corp_id, dept, event_id=event_id, source=source, run_id=run_id, _depth=_depth + 1)


def upsert_department(
    corp_id: str,
    dept: Mapping[str, Any],
    *,
    event_id: str | None,
    source: ContactSource | None = None,
    run_id: int | None = None,
    _depth: int = 0,
) -> OrgNode | None:
    """Create, restore, rename or move the node of a `department/get` result; re-path and reclassify its subtree
    when it moved or its level changed. None when its parent no longer exists (a later event places it)."""
    if _depth > MAX_FETCH_DEPTH:
        raise RuntimeError(f"department {dept.get('dept_id')}: parent chain deeper than {MAX_FETCH_DEPTH}")
    lock_tree(corp_id)
    session = db.session()
    source = source or GatewaySource()
    dept_id = int(dept["dept_id"])
    parent_dept_id = _parent_dept_id(dept)
    node = node_by_dept(corp_id, dept_id)

    parent: OrgNode | None = None
    if parent_dept_id is not None:
        parent = ensure_department(
            corp_id, parent_dept_id, event_id=event_id, source=source, run_id=run_id, _depth=_depth
        )
        if parent is None:
            log.info("department %s skipped: its parent %s no longer exists", dept_id, parent_dept_id)
            return None
        if node is not None and (parent.id == node.id or parent.path.startswith(node.path)):
            # Locally the new parent still sits inside this node (its own move is yet to be applied): bring the
            # parent up to date first, or the tree would get a cycle.
            fresh = source.department(parent_dept_id)
            parent = (
                upsert_department(corp_id, fresh, event_id=event_id, source=source, run_id=run_id, _depth=_depth + 1)
                if fresh is not None
                else None
            )
            if parent is None:
                return None
            if parent.path.startswith(node.path):
                raise RuntimeError(f"department {dept_id}: DingTalk reports a cycle through {parent_dept_id}")

    values: dict[str, Any] = {"name": str(dept.get("name") or "")}
    if "order" in dept:  # listsub items carry no order: keep what is stored
        values["sort_order"] = int(dept.get("order") or 0)
    values["code"] = str(dept["code"]) if dept.get("code") else None
    depth = parent.depth + 1 if parent is not None else 0
    parent_level = parent.level if parent is not None else None

    if node is None:
        result = classify(values["name"], values["code"], parent_level, depth)
        node = OrgNode(
            corp_id=corp_id,
            dept_id=dept_id,
            parent_id=parent.id if parent is not None else None,
            path="",
            depth=depth,
            level=result.level,
            layer=result.layer,
            level_source=result.source,
            sort_order=values.get("sort_order", 0),
            **{k: v for k, v in values.items() if k != "sort_order"},
        )
        session.add(node)
        session.flush()  # the path is made of node ids
        node.path = f"{parent.path if parent is not None else '/'}{node.id}/"
        changes = {
            "name": [None, node.name],
            "parent_id": [None, parent_dept_id],
            "code": [None, node.code],
            "level": [None, node.level],
        }
        _record(corp_id, "node", str(dept_id), "create", changes, event_id, run_id)
        return node

    restored = node.deleted_at is not None
    old_parent_dept_id = _dept_id_of(node.parent_id)
    changes = _set_fields(node, values)
    moved = node.parent_id != (parent.id if parent is not None else None)
    if moved:
        changes["parent_id"] = [old_parent_dept_id, parent_dept_id]
        _move_subtree(node, parent)
    if restored:
        node.deleted_at = None
        changes["deleted_at"] = [True, None]
    result = classify(node.name, node.code, parent_level, node.depth, node.level_override)
    level_changed = node.level != result.level
    changes |= _set_fields(node, {"level": result.level, "layer": result.layer, "level_source": result.source})
    if changes:
        action = "restore" if restored else "move" if moved else "rename" if "name" in changes else "update"
        _record(corp_id, "node", str(dept_id), action, changes, event_id, run_id)
    if moved or level_changed:
        reclassify_subtree(node, event_id=event_id, run_id=run_id)
    return node


def _dept_id_of(node_id: int | None) -> int | None:
    if node_id is None:
        return None
    return db.session().scalar(sa.select(OrgNode.dept_id).where(OrgNode.id == node_id))


def _move_subtree(node: OrgNode, parent: OrgNode | None) -> None:
    """Hang `node` under `parent`: one prefix UPDATE rewrites the path and depth of the node and everything
    below it (live or deleted), whatever the subtree's size."""
    session = db.session()
    old_path = node.path
    new_path = f"{parent.path if parent is not None else '/'}{node.id}/"
    delta = (parent.depth + 1 if parent is not None else 0) - node.depth
    node.parent_id = parent.id if parent is not None else None
    session.flush()
    session.execute(
        sa.update(OrgNode)
        .where(OrgNode.corp_id == node.corp_id, OrgNode.path.startswith(old_path, autoescape=True))
        .values(
            path=sa.literal(new_path, sa.String()) + sa.func.substr(OrgNode.path, len(old_path) + 1, type_=sa.String()),
            depth=OrgNode.depth + delta,
        )
        .execution_options(synchronize_session=False)
    )
    # Rows of the subtree already loaded in this session hold the old paths: reload them on next access.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, OrgNode) and obj.path.startswith(old_path):
            session.expire(obj, ["path", "depth"])


def reclassify_subtree(node: OrgNode, *, event_id: str | None = None, run_id: int | None = None) -> int:
    """Reclassify every node below `node` (whose own level is current), parents before children, since a
    node's level depends on its parent's; returns how many changed."""
    session = db.session()
    levels: dict[int, str] = {node.id: node.level}
    changed = 0
    below = session.scalars(
        sa.select(OrgNode)
        .where(
            OrgNode.corp_id == node.corp_id,
            OrgNode.path.startswith(node.path, autoescape=True),
            OrgNode.id != node.id,
        )
        .order_by(OrgNode.depth, OrgNode.id)
        .execution_options(yield_per=1000)
    )
    for child in below:
        parent_level = levels.get(child.parent_id) if child.parent_id is not None else None
        result = classify(child.name, child.code, parent_level, child.depth, child.level_override)
        levels[child.id] = result.level
        changes = _set_fields(child, {"level": result.level, "layer": result.layer, "level_source": result.source})
        if changes:
            changed += 1
            _record(child.corp_id, "node", str(child.dept_id), "update", changes, event_id, run_id)
    return changed


def reclassify_node(node: OrgNode, *, event_id: str | None = None, run_id: int | None = None) -> None:
    """Reclassify one node from its own fields and its parent's level (e.g. after an admin's override), then
    its subtree when the level changed."""
    parent_level = (
        db.session().scalar(sa.select(OrgNode.level).where(OrgNode.id == node.parent_id)) if node.parent_id else None
    )
    result = classify(node.name, node.code, parent_level, node.depth, node.level_override)
    changes = _set_fields(node, {"level": result.level, "layer": result.layer, "level_source": result.source})
    if changes:
        _record(node.corp_id, "node", str(node.dept_id), "update", changes, event_id, run_id)
        reclassify_subtree(node, event_id=event_id, run_id=run_id)


def remove_department(
    corp_id: str,
    dept_id: int,
    *,
    event_id: str | None,
    source: ContactSource | None = None,
    run_id: int | None = None,
) -> bool:
    """Soft-delete a department DingTalk no longer has; False when it was not live here.

    DingTalk refuses to delete a department with members or sub-departments, so any still stored under it are
    ones whose own events have not been applied yet: each is placed where DingTalk has it now (or removed)
    before the node goes."""
    lock_tree(corp_id)
    node = node_by_dept(corp_id, dept_id)
    if node is None or node.deleted_at is not None:
        return False
    session = db.session()
    source = source or GatewaySource()
    for child in session.scalars(
        sa.select(OrgNode).where(OrgNode.parent_id == node.id, OrgNode.deleted_at.is_(None))
    ).all():
        fresh = source.department(child.dept_id)
        if fresh is not None and _parent_dept_id(fresh) != dept_id:
            upsert_department(corp_id, fresh, event_id=event_id, source=source, run_id=run_id)
        else:
            remove_department(corp_id, child.dept_id, event_id=event_id, source=source, run_id=run_id)
    userids = session.scalars(
        sa.select(OrgMember.userid)
        .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
        .where(OrgMembership.node_id == node.id, OrgMember.deleted_at.is_(None))
    ).all()
    for userid in userids:
        sync_user(corp_id, userid, event_id=event_id, source=source, run_id=run_id)
    for membership, userid in session.execute(
        sa.select(OrgMembership, OrgMember.userid)
        .join(OrgMember, OrgMember.id == OrgMembership.member_id)
        .where(OrgMembership.node_id == node.id)
    ).all():
        _drop_membership(corp_id, membership, userid, dept_id, event_id, run_id)
    node.deleted_at = utcnow()
    _record(corp_id, "node", str(dept_id), "delete", {"deleted_at": [None, True]}, event_id, run_id)
    return True


def sync_department(
    corp_id: str,
    dept_id: int,
    *,
    event_id: str | None,
    source: ContactSource | None = None,
    run_id: int | None = None,
) -> OrgNode | None:
    """Make the stored department equal DingTalk's: upsert it, or remove it when DingTalk says it is gone."""
    source = source or GatewaySource()
    dept = source.department(dept_id)
    if dept is None:
        remove_department(corp_id, dept_id, event_id=event_id, source=source, run_id=run_id)
        return None
    return upsert_department(corp_id, dept, event_id=event_id, source=source, run_id=run_id)


# -- members ----------------------------------------------------------------------------------------------------


def member_by_userid(corp_id: str, userid: str) -> OrgMember | None:
    return db.session().scalar(sa.select(OrgMember).where(OrgMember.corp_id == corp_id, OrgMember.userid == userid))


def _dialect_insert(table: sa.Table) -> Any:
    """An INSERT that can take ON CONFLICT clauses, on either backend."""
    session = db.session()
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def lock_member(corp_id: str, userid: str, *, create: Mapping[str, Any] | None = None) -> tuple[OrgMember | None, bool]:
    """The member row of `userid`, fresh from the database and locked until the transaction ends; with `create`,
    inserted first when missing. Returns `(member, created)`.

    Whoever changes a member's memberships holds this lock from reading them to committing, so two workers
    applying events of the same user run one after the other, each reading what the other committed; before it,
    both could read "no membership in X" and both insert it (a UniqueViolation on pk_org_memberships). A missing
    member is inserted with ON CONFLICT DO NOTHING: a concurrent insert of the same user waits for the first to
    commit and then finds its row, instead of failing on the unique (corp_id, userid).

    PostgreSQL: `SELECT … FOR NO KEY UPDATE` (FOR UPDATE would also block foreign-key checks of memberships
    being inserted by a full sync's apply). SQLite admits one writing transaction at a time and pysqlite begins
    it at the first write, so a write to the row (the insert, or a no-op update) is the lock, and every read
    after it sees what earlier writers committed."""
    session = db.session()
    session.flush()
    postgres = session.get_bind().dialect.name == "postgresql"
    members = OrgMember.__table__
    this = sa.and_(members.c.corp_id == corp_id, members.c.userid == userid)
    created = False
    if create is not None:
        now = utcnow()
        insert = _dialect_insert(members).values(
            corp_id=corp_id, userid=userid, deleted_at=None, created_at=now, updated_at=now, **create
        )
        # RETURNING, not rowcount: a conflict returns no row on both backends.
        inserted = insert.on_conflict_do_nothing(index_elements=["corp_id", "userid"]).returning(members.c.id)
        created = session.execute(inserted).first() is not None
    elif not postgres:
        session.execute(members.update().where(this).values(userid=members.c.userid))
    query = (
        sa.select(OrgMember)
        .where(OrgMember.corp_id == corp_id, OrgMember.userid == userid)
        .execution_options(populate_existing=True)
    )
    if postgres:
        query = query.with_for_update(key_share=True)
    return session.scalar(query), created


def _member_values(user: Mapping[str, Any]) -> dict[str, Any]:
    """The stored fields of a `v2/user/get` result. Fields DingTalk omitted (e.g. `mobile` without the contact
    field permission) are left out, so they keep their stored value; the mobile is stored masked only."""
    values: dict[str, Any] = {"name": str(user.get("name") or "")}
    optional = {
        "unionid": ("unionid", lambda v: str(v) if v else None),
        "title": ("title", lambda v: str(v) if v else None),
        "job_number": ("job_number", lambda v: str(v) if v else None),
        "mobile": ("mobile_masked", lambda v: mask_mobile(str(v)) if v else None),
        "active": ("active", bool),
        "admin": ("is_admin", bool),
        "boss": ("is_boss", bool),
    }
    for key, (column, convert) in optional.items():
        if key in user:
            values[column] = convert(user[key])
    return values


def _positions(user: Mapping[str, Any]) -> dict[int, tuple[int, bool]]:
    """{dept_id: (order in that department, leader there)} from `dept_order_list`/`dept_id_list` and
    `leader_in_dept`."""
    orders: dict[int, int] = {}
    for item in user.get("dept_order_list") or ():
        orders[int(item["dept_id"])] = int(item.get("order") or 0)
    for dept_id in user.get("dept_id_list") or ():
        orders.setdefault(int(dept_id), 0)
    leaders = {int(item["dept_id"]) for item in user.get("leader_in_dept") or () if item.get("leader")}
    return {dept_id: (order, dept_id in leaders) for dept_id, order in orders.items()}


def upsert_member(
    corp_id: str,
    user: Mapping[str, Any],
    *,
    event_id: str | None,
    source: ContactSource | None = None,
    run_id: int | None = None,
) -> OrgMember:
    """Create, restore or update a member from a `v2/user/get` result, and set their memberships to exactly the
    departments DingTalk lists (fetching departments not known here yet)."""
    userid = str(user["userid"])
    values = _member_values(user)
    wanted = _positions(user)
    # Departments before the member: creating one takes the tree lock, and taking it before the member's lock,
    # never after, keeps two workers from each holding one and waiting for the other.
    nodes = {
        dept_id: ensure_department(corp_id, dept_id, event_id=event_id, source=source, run_id=run_id)
        for dept_id in wanted
    }
    member, created = lock_member(corp_id, userid, create=values)
    assert member is not None  # inserted or found, and a member row is never hard-deleted
    if created:
        _record(corp_id, "member", userid, "create", {k: [None, v] for k, v in values.items()}, event_id, run_id)
    else:
        restored = member.deleted_at is not None
        changes = _set_fields(member, values)
        if restored:
            member.deleted_at = None
            changes["deleted_at"] = [True, None]
        if changes:
            _record(corp_id, "member", userid, "restore" if restored else "update", changes, event_id, run_id)
    _set_memberships(corp_id, member, wanted, nodes, event_id=event_id, run_id=run_id)
    return member


def _set_memberships(
    corp_id: str,
    member: OrgMember,
    wanted: Mapping[int, tuple[int, bool]],
    nodes: Mapping[int, OrgNode | None],
    *,
    event_id: str | None,
    run_id: int | None,
) -> None:
    """Make the member's memberships exactly `wanted`; the caller holds the member's lock (`lock_member`) and
    has resolved every wanted department into `nodes` (None: gone from DingTalk)."""
    session = db.session()
    current = {
        dept_id: membership
        for membership, dept_id in session.execute(
            sa.select(OrgMembership, OrgNode.dept_id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgMembership.member_id == member.id)
            .execution_options(populate_existing=True)  # read under the lock: what the last holder committed
        ).all()
    }
    memberships = OrgMembership.__table__
    for dept_id, (order, leader) in wanted.items():
        membership = current.pop(dept_id, None)
        key = f"{member.userid}@{dept_id}"
        node = nodes[dept_id]
        if node is None:  # gone from DingTalk since the user was read: its removal event drops it
            if membership is not None:
                _drop_membership(corp_id, membership, member.userid, dept_id, event_id, run_id)
            continue
        if membership is None:
            # ON CONFLICT DO NOTHING: a full sync's apply (which does not take member locks) may have added the
            # same position meanwhile; it then stays as that wrote it, and the next sync or event corrects it.
            added = session.execute(
                _dialect_insert(memberships)
                .values(member_id=member.id, node_id=node.id, sort_order=order, is_leader=leader)
                .on_conflict_do_nothing(index_elements=["member_id", "node_id"])
                .returning(memberships.c.node_id)
            ).first()
            if added is not None:
                changes = {"sort_order": [None, order], "is_leader": [None, leader]}
                _record(corp_id, "membership", key, "create", changes, event_id, run_id)
        else:  # live, or its node was deleted here and has just been restored
            changes = _set_fields(membership, {"sort_order": order, "is_leader": leader})
            if changes:
                _record(corp_id, "membership", key, "update", changes, event_id, run_id)
    for dept_id, membership in current.items():
        _drop_membership(corp_id, membership, member.userid, dept_id, event_id, run_id)
    session.flush()


def _drop_membership(
    corp_id: str, membership: OrgMembership, userid: str, dept_id: int, event_id: str | None, run_id: int | None
) -> None:
    changes = {"sort_order": [membership.sort_order, None], "is_leader": [membership.is_leader, None]}
    db.session().delete(membership)
    _record(corp_id, "membership", f"{userid}@{dept_id}", "delete", changes, event_id, run_id)


def remove_member(corp_id: str, userid: str, *, event_id: str | None, run_id: int | None = None) -> bool:
    """Soft-delete a member who left, dropping their memberships; False when they were not live here."""
    member, _ = lock_member(corp_id, userid)
    if member is None or member.deleted_at is not None:
        return False
    session = db.session()
    for membership, dept_id in session.execute(
        sa.select(OrgMembership, OrgNode.dept_id)
        .join(OrgNode, OrgNode.id == OrgMembership.node_id)
        .where(OrgMembership.member_id == member.id)
    ).all():
        _drop_membership(corp_id, membership, userid, dept_id, event_id, run_id)
    member.deleted_at = utcnow()
    _record(corp_id, "member", userid, "delete", {"deleted_at": [None, True]}, event_id, run_id)
    session.flush()
    return True


def sync_user(
    corp_id: str,
    userid: str,
    *,
    event_id: str | None,
    source: ContactSource | None = None,
    run_id: int | None = None,
) -> OrgMember | None:
    """Make the stored member equal DingTalk's: upsert them, or remove them when DingTalk says they left."""
    source = source or GatewaySource()
    user = source.user(userid)
    if user is None:
        remove_member(corp_id, userid, event_id=event_id, run_id=run_id)
        return None
    return upsert_member(corp_id, user, event_id=event_id, source=source, run_id=run_id)


__all__ = [
    "ContactSource",
    "GatewaySource",
    "ensure_department",
    "lock_member",
    "lock_tree",
    "member_by_userid",
    "node_by_dept",
    "reclassify_node",
    "reclassify_subtree",
    "remove_department",
    "remove_member",
    "sync_department",
    "sync_user",
    "upsert_department",
    "upsert_member",
]
