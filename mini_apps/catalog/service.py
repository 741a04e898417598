"""The catalog's rules: who may open which app, and who may register, change and withdraw apps.

Plain functions taking the acting `Principal`; no Flask request (routes, jobs and tests call them alike).

Visibility (`can_open`). The operator sees every active app. A member sees an active app when one of their
vantage points matches every non-empty rule of the app:

- a **position** (a node the member belongs to) is a vantage point at the node's path, with
  - levels {the position's own level, the level of the unit it lies in}. A clinician in 内科 of a village
    clinic is at level `internal_department` in unit `member_institution`: an app for member institutions must
    reach the people working in their departments, and an app for departments (rare) must still be expressible,
    so both levels count;
  - one layer: the unit's layer when the unit is a commission or bureau (the classifier labels every internal
    department 服务层, but a commission's 处室 does administrative work), otherwise the position's own layer
    (an institution's departments serve patients: 服务层; the lead hospital's own node is 运营层);
  - the roles that cover it (held over a subtree containing the node);
- a **role** that covers none of the member's positions (a grant elsewhere, e.g. 转诊协调员 of a 转诊办 the member
  does not sit in) is a vantage point at the role's subtree with that role only; having no position there, it
  matches only apps without level or layer rules.

The subtree rule is the app's `visible_subtrees` (node paths by prefix), or the owner's subtree when empty (the
whole tree for province-built apps). A subtree whose node no longer exists matches nobody (fail closed).

Management. Administrators (role `admin`) manage regional apps owned inside their admin subtree. Province-built
apps are managed only by an administrator whose subtree covers the whole tree (the province commission) or the
operator; other administrators see them read-only. An app or node outside the caller's subtree is a 404, the
same as one that does not exist. Every change is audited in the same transaction as the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from mini_apps.catalog.models import AppGroup, CatalogApp
from org_sync.models import OrgNode
from workbench import audit, db
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, Principal, Scope, administers_whole_tree
from workbench.db import utcnow
from workbench.errors import ApiError

RESOURCE = "catalog_app"
VISIBILITY_KEYS = ("subtrees", "levels", "layers", "roles")
# Fields an admin may set, mapped to their columns (visibility is handled separately).
PLAIN_FIELDS = {
    "name": "name",
    "icon": "icon",
    "entry_url": "entry_url",
    "group": "group_code",
    "sort_order": "sort_order",
    "description": "description",
    "owner_kind": "owner_kind",
    "owner_node_id": "owner_node_id",
}


# -- visibility -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vantage:
    """One place a member acts from. `levels`/`layers` are None for a role held where the member has no position."""

    path: str
    levels: frozenset[str] | None
    layers: frozenset[str] | None
    roles: frozenset[str]


def vantages(principal: Principal) -> list[Vantage]:
    """The member's positions, and roles that cover none of them; see the module docstring."""
    points: list[Vantage] = []
    for position in principal.positions:
        levels = {position.level}
        if position.unit_level:
            levels.add(position.unit_level)
        layer = "administrative" if position.unit_level in ADMINISTRATIVE_LEVELS else position.layer
        roles = frozenset(role.code for role in principal.roles if position.path.startswith(role.path))
        points.append(Vantage(position.path, frozenset(levels), frozenset({layer}), roles))
    for role in principal.roles:
        if not any(position.path.startswith(role.path) for position in principal.positions):
            points.append(Vantage(role.path, None, None, frozenset({role.code})))
    return points


def can_open(
    points: Iterable[Vantage],
    subtree_paths: Iterable[str],
    levels: Iterable[str] = (),
    layers: Iterable[str] = (),
    roles: Iterable[str] = (),
) -> bool:
    """Whether some vantage point lies in one of `subtree_paths` and matches every non-empty rule."""
    subtree_paths, levels, layers, roles = tuple(subtree_paths), set(levels), set(layers), set(roles)
    for point in points:
        if not any(point.path.startswith(prefix) for prefix in subtree_paths):
            continue
        if levels and (point.levels is None or not point.levels & levels):
            continue
        if layers and (point.layers is None or not point.layers & layers):
            continue
        if roles and not point.roles & roles:
            continue
        return True
    return False


def _subtree_paths(subtrees: list[int], owner_node_id: int | None, paths: Mapping[int, str]) -> list[str]:
    """The path prefixes an app is visible under (a missing node contributes none: fail closed)."""
    if subtrees:
        return [paths[node_id] for node_id in subtrees if node_id in paths]
    if owner_node_id is None:
        return ["/"]  # province-built: the whole tree
    return [paths[owner_node_id]] if owner_node_id in paths else []


def _node_paths(session: orm.Session, node_ids: Iterable[int]) -> dict[int, str]:
    ids = set(node_ids)
    if not ids:
        return {}
    return dict(session.execute(sa.select(OrgNode.id, OrgNode.path).where(OrgNode.id.in_(ids))).all())


def workbench_apps(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    """What the member may open, grouped by workbench section, sections and apps in their display order.

    One query for the active apps (with their section), one for the paths of the nodes their rules name — skipped
    when no rule names a node (only province-wide apps) or for the operator.
    """
    session = session or db.session()
    rows = session.execute(
        sa.select(
            CatalogApp.code,
            CatalogApp.name,
            CatalogApp.icon,
            CatalogApp.entry_url,
            CatalogApp.description,
            CatalogApp.owner_node_id,
            CatalogApp.visible_subtrees,
            CatalogApp.visible_levels,
            CatalogApp.visible_layers,
            CatalogApp.visible_roles,
            AppGroup.code.label("group_code"),
            AppGroup.name.label("group_name"),
        )
        .join(AppGroup, AppGroup.code == CatalogApp.group_code)
        .where(CatalogApp.state == "active")
        .order_by(AppGroup.sort_order, AppGroup.code, CatalogApp.sort_order, CatalogApp.code)
    ).all()

    if principal.operator:
        shown = rows
    else:
        points = vantages(principal)
        needed = {
            node_id
            for row in rows
            for node_id in (row.visible_subtrees or ([row.owner_node_id] if row.owner_node_id else []))
        }
        paths = _node_paths(session, needed)
        shown = [
            row
            for row in rows
            if can_open(
                points,
                _subtree_paths(row.visible_subtrees or [], row.owner_node_id, paths),
                row.visible_levels or (),
                row.visible_layers or (),
                row.visible_roles or (),
            )
        ]

    groups: list[dict[str, Any]] = []
    for row in shown:
        if not groups or groups[-1]["code"] != row.group_code:
            groups.append({"code": row.group_code, "name": row.group_name, "apps": []})
        groups[-1]["apps"].append(
            {
                "code": row.code,
                "name": row.name,
                "icon": row.icon,
                "entry_url": row.entry_url,
                "description": row.description,
            }
        )
    return {"groups": groups}


# -- administration ---------------------------------------------------------------------------------------------


def _not_found(code: str) -> ApiError:
    return ApiError("not_found", f"应用 {code} 不存在", status=404, field="code")


def _admin_scope(principal: Principal) -> Scope:
    if not principal.has_role("admin"):
        raise ApiError("forbidden", "没有权限执行此操作", status=403, required_roles=["admin"])
    return principal.scope("admin")


@dataclass
class _Loaded:
    app: CatalogApp
    group_name: str
    owner_path: str | None
    owner_name: str | None


def _load_all(session: orm.Session, code: str | None = None) -> list[_Loaded]:
    query = (
        sa.select(CatalogApp, AppGroup.name, OrgNode.path, OrgNode.name)
        .join(AppGroup, AppGroup.code == CatalogApp.group_code)
        .outerjoin(OrgNode, OrgNode.id == CatalogApp.owner_node_id)
        .order_by(AppGroup.sort_order, AppGroup.code, CatalogApp.sort_order, CatalogApp.code)
    )
    if code is not None:
        query = query.where(CatalogApp.code == code)
    return [_Loaded(app, group, path, name) for app, group, path, name in session.execute(query).all()]


def _in_scope(loaded: _Loaded, scope: Scope) -> bool:
    """Readable by the admin: province-built apps, and regional apps owned inside their subtree."""
    if loaded.app.owner_kind == "province" or scope.everything:
        return True
    return loaded.owner_path is not None and scope.covers_path(loaded.owner_path)


def _can_manage(loaded: _Loaded, scope: Scope, whole_tree: bool) -> bool:
    if loaded.app.owner_kind == "province":
        return whole_tree
    return scope.everything or (loaded.owner_path is not None and scope.covers_path(loaded.owner_path))


def app_view(loaded: _Loaded, can_manage: bool) -> dict[str, Any]:
    app = loaded.app
    return {
        "code": app.code,
        "name": app.name,
        "icon": app.icon,
        "entry_url": app.entry_url,
        "group": app.group_code,
        "group_name": loaded.group_name,
        "sort_order": app.sort_order,
        "description": app.description,
        "owner_kind": app.owner_kind,
        "owner_node_id": app.owner_node_id,
        "owner_node_name": loaded.owner_name,
        "visibility": {
            "subtrees": list(app.visible_subtrees or []),
            "levels": list(app.visible_levels or []),
            "layers": list(app.visible_layers or []),
            "roles": list(app.visible_roles or []),
        },
        "state": app.state,
        "withdrawn_at": app.withdrawn_at,
        "withdrawn_by": app.withdrawn_by,
        "created_at": app.created_at,
        "created_by": app.created_by,
        "updated_at": app.updated_at,
        "updated_by": app.updated_by,
        "can_manage": can_manage,
    }


def list_apps(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    """The apps an administrator may see in the catalog (withdrawn ones included), each with `can_manage`."""
    session = session or db.session()
    scope = _admin_scope(principal)
    whole_tree = administers_whole_tree(principal, session)
    items = [app_view(row, _can_manage(row, scope, whole_tree)) for row in _load_all(session) if _in_scope(row, scope)]
    return {"items": items, "can_register_province_apps": whole_tree}


def get_app(principal: Principal, code: str, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    scope = _admin_scope(principal)
    loaded = _readable(session, scope, code)
    return app_view(loaded, _can_manage(loaded, scope, administers_whole_tree(principal, session)))


def _readable(session: orm.Session, scope: Scope, code: str) -> _Loaded:
    rows = _load_all(session, code)
    if not rows or not _in_scope(rows[0], scope):
        raise _not_found(code)
    return rows[0]


def _manageable(principal: Principal, session: orm.Session, code: str, action: str) -> tuple[_Loaded, Scope, bool]:
    """The app if the principal may change it: 404 outside their subtree, 403 for a province-built app they may
    only read. Refusals of existing apps are audited (outcome `denied`)."""
    scope = _admin_scope(principal)
    rows = _load_all(session, code)
    whole_tree = administers_whole_tree(principal, session)
    if not rows or not _in_scope(rows[0], scope):
        if rows:
            _deny(principal, action, rows[0].app, "outside_scope")
        raise _not_found(code)
    if not _can_manage(rows[0], scope, whole_tree):
        _deny(principal, action, rows[0].app, "province_app")
        raise ApiError("forbidden", "省级统建应用只能由省级管理员修改", status=403, field="code")
    return rows[0], scope, whole_tree


def _deny(principal: Principal, action: str, app: CatalogApp | None, reason: str, **detail: Any) -> None:
    # Written in its own transaction: the refused request rolls back, the record of the attempt stays.
    audit.record(
        principal,
        action,
        resource_type=RESOURCE,
        resource_id=app.code if app else detail.pop("code", None),
        node_id=app.owner_node_id if app else None,
        outcome="denied",
        detail={"reason": reason, **detail},
    )


def _live_node(session: orm.Session, node_id: int) -> OrgNode | None:
    node = session.get(OrgNode, node_id)
    return node if node is not None and node.deleted_at is None else None


def _check(
    principal: Principal,
    session: orm.Session,
    scope: Scope,
    whole_tree: bool,
    values: dict[str, Any],
    action: str,
) -> None:
    """Validate a full set of app values against the caller's subtree; raises 403, 404 or 422 naming the field."""
    code = values["code"]
    kind = values["owner_kind"]
    owner_id = values["owner_node_id"]
    if kind == "province":
        if not whole_tree:
            _deny(principal, action, None, "province_app", code=code)
            raise ApiError("forbidden", "只有省级管理员可以登记或修改省级统建应用", status=403, field="owner_kind")
        if owner_id is not None:
            message = "省级统建应用不设归属节点（整棵组织树）"
            raise ApiError("validation_error", message, status=422, field="owner_node_id")
        owner_path = None
    else:
        if owner_id is None:
            raise ApiError("validation_error", "地方自建应用须指定归属节点", status=422, field="owner_node_id")
        owner = _live_node(session, owner_id)
        if owner is None or not scope.covers_path(owner.path):
            if owner is not None:
                _deny(principal, action, None, "owner_outside_scope", code=code, owner_node_id=owner_id)
            raise ApiError("not_found", f"组织节点 {owner_id} 不存在", status=404, field="owner_node_id")
        owner_path = owner.path
        if not values["entry_url"].startswith("https://"):
            raise ApiError(
                "validation_error", "地方自建应用的入口须为 https:// 外部地址", status=422, field="entry_url"
            )

    for node_id in values["visibility"]["subtrees"]:
        node = _live_node(session, node_id)
        if node is None or not scope.covers_path(node.path):
            if node is not None:
                _deny(principal, action, None, "subtree_outside_scope", code=code, node_id=node_id)
            raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="visibility.subtrees")
        if owner_path is not None and not node.path.startswith(owner_path):
            raise ApiError("validation_error", "可见范围须在应用归属节点之内", status=422, field="visibility.subtrees")

    if session.get(AppGroup, values["group"]) is None:
        raise ApiError("validation_error", f"未知的工作台分组：{values['group']}", status=422, field="group")


def _dedupe(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _commit(session: orm.Session, code: str) -> None:
    try:
        session.commit()
    except IntegrityError as exc:
        # Two admins registering the same code at once: the unique index decides. Anything else is a bug.
        session.rollback()
        if session.scalar(sa.select(CatalogApp.id).where(CatalogApp.code == code)) is None:
            raise
        raise ApiError("conflict", f"应用代码 {code} 已被使用", status=409, field="code") from exc


def add_app(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict[str, Any]:
    """Register an app (regional under a node of the caller's subtree; province-built by a province admin)."""
    session = session or db.session()
    scope = _admin_scope(principal)
    whole_tree = administers_whole_tree(principal, session)
    values = {
        "code": data["code"],
        "name": data["name"],
        "icon": data["icon"],
        "entry_url": data["entry_url"],
        "group": data["group"],
        "sort_order": data.get("sort_order", 100),
        "description": data.get("description", ""),
        "owner_kind": data.get("owner_kind", "regional"),
        "owner_node_id": data.get("owner_node_id"),
        "visibility": {key: _dedupe((data.get("visibility") or {}).get(key, ())) for key in VISIBILITY_KEYS},
    }
    _check(principal, session, scope, whole_tree, values, "catalog.app.create")
    if session.scalar(sa.select(CatalogApp.id).where(CatalogApp.code == values["code"])) is not None:
        raise ApiError("conflict", f"应用代码 {values['code']} 已被使用", status=409, field="code")

    app = CatalogApp(
        code=values["code"],
        **{column: values[key] for key, column in PLAIN_FIELDS.items()},
        **{f"visible_{key}": values["visibility"][key] for key in VISIBILITY_KEYS},
        state="active",
        created_by=principal.actor,
        updated_by=principal.actor,
    )
    session.add(app)
    audit.record(
        principal,
        "catalog.app.create",
        resource_type=RESOURCE,
        resource_id=app.code,
        node_id=app.owner_node_id,
        detail={"owner_kind": app.owner_kind, "group": app.group_code, "visibility": values["visibility"]},
        session=session,
    )
    _commit(session, values["code"])
    return get_app(principal, values["code"], session)


def change_app(
    principal: Principal, code: str, changes: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Change an app's fields (the code is its identity and stays); visibility lists given replace the old ones."""
    session = session or db.session()
    loaded, scope, whole_tree = _manageable(principal, session, code, "catalog.app.change")
    app = loaded.app
    current = {key: getattr(app, column) for key, column in PLAIN_FIELDS.items()}
    current["visibility"] = {key: list(getattr(app, f"visible_{key}") or []) for key in VISIBILITY_KEYS}
    values = {"code": app.code, **current, **{k: v for k, v in changes.items() if k in PLAIN_FIELDS}}
    if changes.get("owner_kind") == "province" and "owner_node_id" not in changes:
        values["owner_node_id"] = None  # becoming province-built: owned by the whole tree
    given = changes.get("visibility") or {}
    values["visibility"] = {
        key: _dedupe(given[key]) if key in given else current["visibility"][key] for key in VISIBILITY_KEYS
    }
    _check(principal, session, scope, whole_tree, values, "catalog.app.change")

    diff: dict[str, list[Any]] = {}
    for key, column in PLAIN_FIELDS.items():
        if values[key] != current[key]:
            diff[key] = [current[key], values[key]]
            setattr(app, column, values[key])
    for key in VISIBILITY_KEYS:
        if values["visibility"][key] != current["visibility"][key]:
            diff[f"visibility.{key}"] = [current["visibility"][key], values["visibility"][key]]
            setattr(app, f"visible_{key}", values["visibility"][key])
    if diff:
        app.updated_by = principal.actor
        app.updated_at = utcnow()
        audit.record(
            principal,
            "catalog.app.change",
            resource_type=RESOURCE,
            resource_id=app.code,
            node_id=app.owner_node_id,
            detail={"changes": diff},
            session=session,
        )
        session.commit()
    return get_app(principal, code, session)


def withdraw_app(principal: Principal, code: str, session: orm.Session | None = None) -> dict[str, Any]:
    """Take an app off every workbench (it stays in the catalog and can be restored)."""
    return _set_state(principal, code, "withdrawn", session or db.session())


def restore_app(principal: Principal, code: str, session: orm.Session | None = None) -> dict[str, Any]:
    return _set_state(principal, code, "active", session or db.session())


def _set_state(principal: Principal, code: str, state: str, session: orm.Session) -> dict[str, Any]:
    action = "catalog.app.withdraw" if state == "withdrawn" else "catalog.app.restore"
    loaded, _, _ = _manageable(principal, session, code, action)
    app = loaded.app
    if app.state == state:
        message = "应用已下架" if state == "withdrawn" else "应用未下架，无需恢复"
        raise ApiError("invalid_state", message, status=409, field="state", state=app.state)
    now = utcnow()
    previous = {"withdrawn_at": app.withdrawn_at, "withdrawn_by": app.withdrawn_by}
    app.state = state
    # who/when of the current withdrawal; the audit log keeps the history of earlier ones
    app.withdrawn_at, app.withdrawn_by = (now, principal.actor) if state == "withdrawn" else (None, None)
    app.updated_at, app.updated_by = now, principal.actor
    detail: dict[str, Any] = {"state": [("active" if state == "withdrawn" else "withdrawn"), state]}
    if state == "active" and previous["withdrawn_at"] is not None:
        detail["withdrawn_at"] = previous["withdrawn_at"].isoformat()
        detail["withdrawn_by"] = previous["withdrawn_by"]
    audit.record(
        principal,
        action,
        resource_type=RESOURCE,
        resource_id=app.code,
        node_id=app.owner_node_id,
        detail=detail,
        session=session,
    )
    session.commit()
    return get_app(principal, code, session)
