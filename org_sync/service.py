"""Reads of the organisation tree, and the one write an admin makes (a level override).

Plain functions over the database, no Flask request: routes, jobs and other parts call them alike. Every read
is limited to the caller's `Scope` (their positions' subtrees; `workbench.auth.principal`): a node or member
outside it answers 404, exactly like one that does not exist. Only live (not soft-deleted) nodes, members and
memberships are ever shown. Mobiles are stored masked and shown masked.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from org_sync import apply
from org_sync.models import LEVELS, OrgMember, OrgMembership, OrgNode
from workbench import audit, db
from workbench.auth.principal import Principal, Scope
from workbench.errors import ApiError
from workbench.privacy import mask_mobile

MAX_PAGE_SIZE = 200
EXPORT_BATCH = 2000  # rows fetched per round trip while streaming an export


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    page: int
    page_size: int


def _live_node(node_id: int, scope: Scope) -> OrgNode:
    node = db.session().get(OrgNode, node_id)
    if node is None or node.deleted_at is not None or not scope.covers_path(node.path):
        raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="id")
    return node


def node_view(node: OrgNode) -> dict[str, Any]:
    return {
        "id": node.id,
        "corp_id": node.corp_id,
        "dept_id": node.dept_id,
        "parent_id": node.parent_id,
        "name": node.name,
        "code": node.code,
        "level": node.level,
        "layer": node.layer,
        "level_source": node.level_source,
        "level_override": node.level_override,
        "depth": node.depth,
        "sort_order": node.sort_order,
    }


def _paged(query: sa.Select, page: int, page_size: int) -> Page:
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    page = max(1, page)
    rows, total = db.paginate(query, page, page_size)
    return Page([node_view(n) for n in rows], total, page, page_size)


def get_node(node_id: int, scope: Scope) -> dict[str, Any]:
    """A node with its ancestors (root first: the way up is shown even above the scope, as a breadcrumb) and how
    many live sub-departments and members it has directly."""
    session = db.session()
    node = _live_node(node_id, scope)
    ancestor_ids = [int(i) for i in node.path.strip("/").split("/")[:-1]]
    ancestors = session.scalars(sa.select(OrgNode).where(OrgNode.id.in_(ancestor_ids)).order_by(OrgNode.depth)).all()
    children = session.scalar(
        sa.select(sa.func.count()).where(OrgNode.parent_id == node.id, OrgNode.deleted_at.is_(None))
    )
    members = session.scalar(
        sa.select(sa.func.count())
        .select_from(OrgMembership)
        .join(OrgMember, OrgMember.id == OrgMembership.member_id)
        .where(OrgMembership.node_id == node.id, OrgMember.deleted_at.is_(None))
    )
    return {
        **node_view(node),
        "ancestors": [node_view(a) for a in ancestors],
        "children_count": children or 0,
        "members_count": members or 0,
    }


def list_children(node_id: int, scope: Scope, *, page: int = 1, page_size: int = 50) -> Page:
    """Live sub-departments of a node in DingTalk's order."""
    _live_node(node_id, scope)
    query = (
        sa.select(OrgNode)
        .where(OrgNode.parent_id == node_id, OrgNode.deleted_at.is_(None))
        .order_by(OrgNode.sort_order, OrgNode.dept_id)
    )
    return _paged(query, page, page_size)


def search_nodes(q: str, scope: Scope, *, root_id: int | None = None, page: int = 1, page_size: int = 20) -> Page:
    """Live nodes in the scope whose name contains `q` (optionally under `root_id`), highest in the tree first."""
    q = q.strip()
    if not q:
        raise ApiError("validation_error", "请输入要搜索的名称", status=422, field="q")
    query = sa.select(OrgNode).where(
        OrgNode.deleted_at.is_(None), OrgNode.name.contains(q, autoescape=True), scope.subtree(OrgNode.path)
    )
    if root_id is not None:
        root = _live_node(root_id, scope)
        query = query.where(OrgNode.path.startswith(root.path, autoescape=True))
    return _paged(query.order_by(OrgNode.depth, OrgNode.sort_order, OrgNode.id), page, page_size)


def get_member(userid: str, scope: Scope, corp_id: str | None = None) -> dict[str, Any]:
    """A live member with their positions: each department with its level, layer and whether they lead it.

    Visible when they hold a position inside the scope (or are the caller); only those positions are listed."""
    session = db.session()
    query = sa.select(OrgMember).where(OrgMember.userid == userid, OrgMember.deleted_at.is_(None))
    if corp_id:
        query = query.where(OrgMember.corp_id == corp_id)
    member = session.scalars(query.order_by(OrgMember.id)).first()
    positions = []
    if member is not None:
        own = scope.member_id == member.id
        positions = session.execute(
            sa.select(OrgNode, OrgMembership)
            .join(OrgMembership, OrgMembership.node_id == OrgNode.id)
            .where(
                OrgMembership.member_id == member.id,
                OrgNode.deleted_at.is_(None),
                sa.true() if own else scope.subtree(OrgNode.path),
            )
            .order_by(OrgNode.depth, OrgNode.id)
        ).all()
        if not positions and not own:
            member = None
    if member is None:
        raise ApiError("not_found", f"成员 {userid} 不存在", status=404, field="userid")
    return {
        **_member_view(member),
        "positions": [
            {
                "node_id": node.id,
                "dept_id": node.dept_id,
                "name": node.name,
                "level": node.level,
                "layer": node.layer,
                "is_leader": membership.is_leader,
                "sort_order": membership.sort_order,
            }
            for node, membership in positions
        ],
    }


def _member_view(member: OrgMember) -> dict[str, Any]:
    return {
        "corp_id": member.corp_id,
        "userid": member.userid,
        "unionid": member.unionid,
        "name": member.name,
        "title": member.title,
        "job_number": member.job_number,
        "mobile": mask_mobile(member.mobile_masked),  # stored masked; masked again in case a row was not
        "active": member.active,
        "is_admin": member.is_admin,
        "is_boss": member.is_boss,
    }


def set_level_override(node_id: int, level: str | None, principal: Principal) -> dict[str, Any]:
    """An admin corrects a node's level (or clears the correction) within their subtree; syncs never overwrite
    it. The node and the levels below it that depend on it are reclassified at once. Audited: a level decides
    who administers what (a node made a county bureau makes its members administrators)."""
    if level is not None and level not in LEVELS:
        raise ApiError("validation_error", f"未知的层级：{level}", status=422, field="level_override")
    session = db.session()
    admin_scope = principal.scope("admin")
    node = _live_node(node_id, admin_scope)
    if node.level_override != level:
        change = {"level_override": [node.level_override, level]}
        apply._record(node.corp_id, "node", str(node.dept_id), "update", change, None)
        node.level_override = level
        apply.reclassify_node(node)
        audit.record(
            principal,
            "org.level_override",
            resource_type="org_node",
            resource_id=node.id,
            node_id=node.id,
            detail=change,
            session=session,
        )
    session.commit()
    return get_node(node_id, admin_scope)


# -- export -----------------------------------------------------------------------------------------------------


def export_chunks(admin_scope: Scope, root_id: int | None = None) -> Iterator[str]:
    """The export of `export_items` in chunks of about 64 KB, the pieces a streamed response is sent in. An
    unknown root fails here, before the first byte is sent, so the caller can still answer 404.

    Without `root_id`: the whole tree for a province-wide scope, else the one subtree the caller administers
    (one who administers several must name which)."""
    if root_id is None and not admin_scope.everything:
        if len(admin_scope.paths) != 1:
            raise ApiError("validation_error", "您管理多个组织，请用 root 指定导出哪一个", status=422, field="root")
        root_id = int(admin_scope.paths[0].strip("/").split("/")[-1])
    prefix = _live_node(root_id, admin_scope).path if root_id is not None else None
    return _chunks(export_items(root_id, prefix))


def _chunks(pieces: Iterator[str]) -> Iterator[str]:
    buffer: list[str] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= 65536:
            yield "".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer)


def export_items(root_id: int | None, prefix: str | None) -> Iterator[str]:
    """Every live department and member of a subtree (or of the whole tree) as one JSON document, produced in
    pieces so that a province (300,000 members) is never held in memory:

        {"root": …, "departments": [{corp_id, dept_id, name, parent_id, level}],
         "users": [{corp_id, userid, name, title, active, mobile, dept_id_list, leader_dept_ids}]}

    Under a root, a member's department list holds only departments inside it."""
    session = db.session()
    yield '{"root": ' + json.dumps(root_id) + ', "departments": ['

    parent = orm.aliased(OrgNode)
    depts = (
        sa.select(OrgNode.corp_id, OrgNode.dept_id, OrgNode.name, parent.dept_id, OrgNode.level)
        .outerjoin(parent, parent.id == OrgNode.parent_id)
        .where(OrgNode.deleted_at.is_(None))
        .order_by(OrgNode.path)
        .execution_options(yield_per=EXPORT_BATCH)
    )
    if prefix is not None:
        depts = depts.where(OrgNode.path.startswith(prefix, autoescape=True))
    for i, (corp_id, dept_id, name, parent_dept_id, level) in enumerate(session.execute(depts)):
        item = {"corp_id": corp_id, "dept_id": dept_id, "name": name, "parent_id": parent_dept_id, "level": level}
        yield ("," if i else "") + json.dumps(item, ensure_ascii=False)
    yield '], "users": ['

    in_scope = sa.and_(OrgNode.id == OrgMembership.node_id, OrgNode.deleted_at.is_(None))
    if prefix is not None:
        in_scope = sa.and_(in_scope, OrgNode.path.startswith(prefix, autoescape=True))
    columns = (
        OrgMember.id,
        OrgMember.corp_id,
        OrgMember.userid,
        OrgMember.name,
        OrgMember.title,
        OrgMember.active,
        OrgMember.mobile_masked,
        OrgNode.dept_id,
        OrgMembership.is_leader,
    )
    users = sa.select(*columns).where(OrgMember.deleted_at.is_(None))
    if prefix is None:  # the whole tree: members without any position are listed too, so they show up in a diff
        users = users.outerjoin(OrgMembership, OrgMembership.member_id == OrgMember.id).outerjoin(OrgNode, in_scope)
    else:
        users = users.join(OrgMembership, OrgMembership.member_id == OrgMember.id).join(OrgNode, in_scope)
    users = users.order_by(OrgMember.id, OrgNode.dept_id).execution_options(yield_per=EXPORT_BATCH)
    rows = session.execute(users)
    for i, (_, group) in enumerate(itertools.groupby(rows, key=lambda r: r[0])):
        group = list(group)
        first = group[0]
        item = {
            "corp_id": first.corp_id,
            "userid": first.userid,
            "name": first.name,
            "title": first.title,
            "active": first.active,
            "mobile": mask_mobile(first.mobile_masked),
            "dept_id_list": sorted({r.dept_id for r in group if r.dept_id is not None}),
            "leader_dept_ids": sorted({r.dept_id for r in group if r.dept_id is not None and r.is_leader}),
        }
        yield ("," if i else "") + json.dumps(item, ensure_ascii=False)
    yield "]}"
