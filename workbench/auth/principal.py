"""Who is acting, from where, with which roles — and the one scoping helper every query goes through.

A member acts from their positions in the tree (DESIGN.md "Scope and permissions"). Roles come from positions
(a member of a county bureau administers the county's subtree; a clinician acts in their institution) plus
explicit grants an administrator made within their own subtree. `Principal.scope()` turns all of it into SQL
filters: materialised-path prefixes, and the member's own records.

Plain data and functions: no Flask request is needed to build or use a principal (jobs and tests use them too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import orm

from org_sync.models import OrgMember, OrgMembership, OrgNode, path_ids
from workbench.auth.models import RoleGrant
from workbench.errors import ApiError

ADMINISTRATIVE_LEVELS = ("province_commission", "city_commission", "county_bureau")
INSTITUTION_LEVELS = ("medical_community_lead", "member_institution")

# Role codes and their Chinese names. `admin` and `clinician` come from positions; the rest only by grant.
ROLES = {
    "admin": "管理员",  # of a commission's or bureau's subtree
    "institution_admin": "机构管理员",  # of one institution (its leaders, or by grant)
    "clinician": "医务人员",  # acts in one institution
    "referral_coordinator": "转诊协调员",
    "supervisor": "监管员",
    "finance_officer": "财务专员",
}
GRANTABLE_ROLES = tuple(role for role in ROLES if role != "clinician")


@dataclass(frozen=True)
class Position:
    """One node a member belongs to, and the unit (bureau or institution) that node lies in."""

    node_id: int
    name: str
    path: str
    level: str
    layer: str
    is_leader: bool
    unit_id: int | None  # the nearest administrative unit or institution at or above the node
    unit_name: str | None
    unit_level: str | None
    unit_path: str | None


@dataclass(frozen=True)
class Role:
    """A role over a subtree: `path` is the subtree's materialised path, `node_id` its root."""

    code: str
    node_id: int
    path: str
    source: str  # position | leader | grant | operator
    grant_id: int | None = None


@dataclass(frozen=True)
class Principal:
    """The signed-in member (or the operator credential) with positions and roles."""

    member_id: int | None  # None for the operator credential (ADMIN_TOKEN)
    corp_id: str | None
    userid: str | None
    name: str
    positions: tuple[Position, ...] = ()
    roles: tuple[Role, ...] = ()
    operator: bool = False  # the deploy-time operator credential: everything, every action audited

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return "operator" if self.operator else f"{self.corp_id}:{self.userid}"

    def role_codes(self) -> set[str]:
        return {role.code for role in self.roles}

    def has_role(self, *codes: str) -> bool:
        return self.operator or any(role.code in codes for role in self.roles)

    def scope(self, *codes: str) -> Scope:
        """What this principal may see: the subtrees of its roles (all roles, or only `codes`)."""
        if self.operator:
            return Scope(member_id=None, paths=(), everything=True)
        roles = [role for role in self.roles if not codes or role.code in codes]
        return Scope(member_id=self.member_id, paths=_outermost(role.path for role in roles))

    def institution_ids(self) -> tuple[int, ...]:
        """The institutions this member works in (the `unit_id` of positions inside an institution)."""
        return tuple(
            dict.fromkeys(p.unit_id for p in self.positions if p.unit_level in INSTITUTION_LEVELS and p.unit_id)
        )


@dataclass(frozen=True)
class Scope:
    """Query filters for one principal: subtrees by materialised-path prefix, plus the member's own records."""

    member_id: int | None
    paths: tuple[str, ...] = field(default_factory=tuple)
    everything: bool = False

    def covers_path(self, path: str) -> bool:
        return self.everything or any(path.startswith(prefix) for prefix in self.paths)

    def subtree(self, path: orm.InstrumentedAttribute | sa.ColumnElement) -> sa.ColumnElement[bool]:
        """Nodes (by their materialised `path` column) inside the scope: one index range scan per prefix."""
        if self.everything:
            return sa.true()
        if not self.paths:
            return sa.false()
        return sa.or_(*(path.startswith(prefix, autoescape=True) for prefix in self.paths))

    def node_ids(self) -> sa.Select:
        """A subquery of the ids of every node inside the scope (deleted nodes included: old records keep them)."""
        return sa.select(OrgNode.id).where(self.subtree(OrgNode.path))

    def nodes(self, node_id: orm.InstrumentedAttribute | sa.ColumnElement) -> sa.ColumnElement[bool]:
        """Rows attached to a node inside the scope (`node_id` is the row's node or institution column)."""
        if self.everything:
            return sa.true()
        if not self.paths:
            return sa.false()
        return node_id.in_(self.node_ids())

    def records(
        self,
        node_id: orm.InstrumentedAttribute | sa.ColumnElement,
        owner_id: orm.InstrumentedAttribute | sa.ColumnElement | None = None,
    ) -> sa.ColumnElement[bool]:
        """Rows attached to a node inside the scope, or owned by the member (`owner_id` = a member id column)."""
        clause = self.nodes(node_id)
        if owner_id is not None and self.member_id is not None and not self.everything:
            clause = sa.or_(clause, owner_id == self.member_id)
        return clause

    def require_node(self, node: OrgNode | None, what: str = "组织节点") -> OrgNode:
        """The node if it is inside the scope; otherwise the same 404 as a node that does not exist."""
        if node is None or not self.covers_path(node.path):
            raise ApiError("not_found", f"{what}不存在", status=404)
        return node


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    """Drop paths inside another one, so filters stay short (a county admin who is also a clinician there)."""
    unique = sorted(set(paths), key=len)
    kept: list[str] = []
    for path in unique:
        if not any(path.startswith(prefix) for prefix in kept):
            kept.append(path)
    return tuple(kept)


def actor_names(session: orm.Session, actors: Iterable[str]) -> dict[str, str]:
    """{"corp:userid": name} for the members among `actors` (as `Principal.actor` writes them; one query)."""
    pairs = {a: tuple(a.split(":", 1)) for a in actors if a and ":" in a and not a.startswith("system")}
    userids = {userid for _, userid in pairs.values()}
    if not userids:
        return {}
    rows = session.execute(
        sa.select(OrgMember.corp_id, OrgMember.userid, OrgMember.name).where(OrgMember.userid.in_(userids))
    ).all()
    by_pair = {(corp, userid): name for corp, userid, name in rows}
    return {actor: by_pair[pair] for actor, pair in pairs.items() if pair in by_pair}


def operator_principal() -> Principal:
    return Principal(member_id=None, corp_id=None, userid=None, name="运维管理员", operator=True)


def load_principal(session: orm.Session, member_id: int) -> Principal | None:
    """The member's positions and roles as stored now; None when the member is gone or inactive.

    Read on every request (a member who leaves loses access at once), so it is three lean Core queries: the
    member with their live nodes, the unit-level ancestors of those nodes, and the member's live grants.
    """
    rows = session.execute(
        sa.select(
            OrgMember.corp_id,
            OrgMember.userid,
            OrgMember.name,
            OrgNode.id,
            OrgNode.name,
            OrgNode.path,
            OrgNode.level,
            OrgNode.layer,
            OrgMembership.is_leader,
        )
        .select_from(OrgMember)
        .outerjoin(OrgMembership, OrgMembership.member_id == OrgMember.id)
        .outerjoin(OrgNode, sa.and_(OrgNode.id == OrgMembership.node_id, OrgNode.deleted_at.is_(None)))
        .where(OrgMember.id == member_id, OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
        .order_by(OrgMembership.sort_order, OrgNode.id)
    ).all()
    if not rows:
        return None
    corp_id, userid, name = rows[0][:3]
    nodes = [row[3:] for row in rows if row[3] is not None]
    ancestor_ids = {node_id for node in nodes for node_id in path_ids(node[2])}
    units: dict[int, tuple[int, str, str, str]] = {}
    if ancestor_ids:
        units = {
            unit[0]: tuple(unit)
            for unit in session.execute(
                sa.select(OrgNode.id, OrgNode.name, OrgNode.level, OrgNode.path).where(
                    OrgNode.id.in_(ancestor_ids), OrgNode.level.in_(ADMINISTRATIVE_LEVELS + INSTITUTION_LEVELS)
                )
            )
        }

    positions: list[Position] = []
    roles: list[Role] = []
    for node_id, node_name, path, level, layer, is_leader in nodes:
        # The nearest unit at or above the node: its path lists the node ids from the root down.
        chain = path_ids(path)
        unit = next((units[i] for i in reversed(chain) if i in units), None)
        unit_id, unit_name, unit_level, unit_path = unit or (None, None, None, None)
        positions.append(
            Position(node_id, node_name, path, level, layer, bool(is_leader), unit_id, unit_name, unit_level, unit_path)
        )
        if unit_id is None:
            continue
        if unit_level in ADMINISTRATIVE_LEVELS:
            roles.append(Role("admin", unit_id, unit_path, "position"))
        else:
            roles.append(Role("clinician", unit_id, unit_path, "position"))
            if is_leader and node_id == unit_id:
                roles.append(Role("institution_admin", unit_id, unit_path, "leader"))

    grants = session.execute(
        sa.select(RoleGrant.id, RoleGrant.role, RoleGrant.node_id, OrgNode.path)
        .join(OrgNode, OrgNode.id == RoleGrant.node_id)
        .where(RoleGrant.member_id == member_id, RoleGrant.revoked_at.is_(None), OrgNode.deleted_at.is_(None))
    )
    roles += [Role(role, node_id, path, "grant", grant_id) for grant_id, role, node_id, path in grants]
    return Principal(
        member_id=member_id,
        corp_id=corp_id,
        userid=userid,
        name=name,
        positions=tuple(positions),
        roles=tuple(dict.fromkeys(roles)),
    )


def administers_whole_tree(principal: Principal, session: orm.Session) -> bool:
    """The operator, or an administrator of every root of the tree (the province commission; with linked
    organisations, every trunk). A root is a live node without a parent; an orphan that arrived before its
    parent briefly counts as one, which can only deny (never grant) province-wide rights until it is placed."""
    if principal.operator:
        return True
    scope = principal.scope("admin")
    if not scope.paths:
        return False
    roots = session.scalars(sa.select(OrgNode.path).where(OrgNode.parent_id.is_(None), OrgNode.deleted_at.is_(None)))
    paths = list(roots)
    return bool(paths) and all(scope.covers_path(path) for path in paths)
