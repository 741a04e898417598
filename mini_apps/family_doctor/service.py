"""Family-doctor signing rules: teams, residents, contracts. Plain functions taking the acting `Principal`.

Scope. A team is visible to, and may be acted for (sign, renew, terminate) by:
- its members (a doctor of another team of the same institution sees nothing of this one);
- an institution admin (`institution_admin`) or an admin (`admin`) whose subtree holds the team's institution;
- the operator.
Only admins and institution admins (not plain members) create teams and change their members. A resident is
visible when the team of their current contract is. Anything outside the scope is a 404, like a missing row.

Privacy. ID numbers and phones are stored encrypted with a keyed hash for lookups (`workbench.privacy`); every
view shows them masked. Every read of residents is audited: one `resident.list` record per list (count and
filters) and one `resident.read` per resident opened — ids only, never names or ID numbers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from bot import messages
from mini_apps.family_doctor import chats, idcard, notices
from mini_apps.family_doctor.models import (
    MEMBER_ROLES,
    TAGS,
    Contract,
    FamilyDoctorTeam,
    FollowUp,
    Resident,
    TeamMember,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode, path_ids
from workbench import audit, db, privacy
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

MANAGER_ROLES = ("admin", "institution_admin")
EXPIRING_DAYS = 30
CHINA = ZoneInfo("Asia/Shanghai")
BASIC_PACKAGE = "基础包"


def today() -> date:
    """Contract dates are calendar dates in China."""
    return datetime.now(CHINA).date()


def id_hash(number: str) -> str:
    """The stored lookup hash of an ID number (current lookup key)."""
    return privacy.lookup_hash(number, privacy.keyring(), context="resident.id_number")


def id_hashes(number: str) -> list[str]:
    """Its hash under every lookup key, current first: what a lookup must match while keys rotate."""
    return privacy.lookup_hashes(number, privacy.keyring(), context="resident.id_number")


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February → 28 February
        return day.replace(year=day.year + years, day=28)


def earliest_end(start: date) -> date:
    """A contract runs at least one year (国卫基层发〔2018〕35号): start 2025-03-01 → end 2026-02-28 or later (both
    days inclusive), which is how public-health systems write a one-year term."""
    return add_years(start, 1) - timedelta(days=1)


def default_end(start: date) -> date:
    return earliest_end(start)


def period_error(start: date, end: date) -> str | None:
    if end < earliest_end(start):
        return f"签约期限不少于一年：到期日期不得早于 {earliest_end(start).isoformat()}"
    return None


def state_sql(on: date | None = None) -> sa.ColumnElement[str]:
    """The shown state of a contract, from its stored status and the calendar."""
    on = on or today()
    return sa.case(
        (Contract.status != "active", Contract.status),
        (Contract.end_date < on, "expired"),
        (Contract.end_date <= on + timedelta(days=EXPIRING_DAYS), "expiring"),
        else_="active",
    )


def state_of(contract: Contract, on: date | None = None) -> str:
    on = on or today()
    if contract.status != "active":
        return contract.status
    if contract.end_date < on:
        return "expired"
    if contract.end_date <= on + timedelta(days=EXPIRING_DAYS):
        return "expiring"
    return "active"


def parse_tags(values: list[str] | str | None) -> list[str]:
    """Tag codes or Chinese labels → codes (unknown ones raise `ValueError` naming them)."""
    if not values:
        return []
    if isinstance(values, str):
        for sep in "，、；;|/":
            values = values.replace(sep, ",")
        values = [v for v in values.split(",")]
    by_label = {label: code for code, label in TAGS.items()}
    codes: list[str] = []
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        code = value if value in TAGS else by_label.get(value)
        if code is None:
            raise ValueError(f"未知的重点人群：{value}")
        if code not in codes:
            codes.append(code)
    return codes


def tags_column(codes: list[str]) -> str:
    return f",{','.join(codes)}," if codes else ""


def tags_list(column: str) -> list[str]:
    return [code for code in column.split(",") if code]


# -- scope ------------------------------------------------------------------------------------------------------


def visible_team_ids(principal: Principal) -> sa.Select:
    """Ids of the teams the principal may see and act for (see the module docstring)."""
    if principal.operator:
        return sa.select(FamilyDoctorTeam.id)
    managed = principal.scope(*MANAGER_ROLES).nodes(FamilyDoctorTeam.institution_id)
    if principal.member_id is None:
        return sa.select(FamilyDoctorTeam.id).where(managed)
    own = FamilyDoctorTeam.id.in_(sa.select(TeamMember.team_id).where(TeamMember.member_id == principal.member_id))
    return sa.select(FamilyDoctorTeam.id).where(sa.or_(managed, own))


def _team_not_found(team_id: Any, field: str | None = "team_id") -> ApiError:
    return ApiError("not_found", f"家庭医生团队 {team_id} 不存在", status=404, field=field)


def _visible_team(principal: Principal, session: orm.Session, team_id: int, field: str = "team_id"):
    row = session.execute(
        sa.select(FamilyDoctorTeam, OrgNode)
        .join(OrgNode, OrgNode.id == FamilyDoctorTeam.institution_id)
        .where(FamilyDoctorTeam.id == team_id, FamilyDoctorTeam.id.in_(visible_team_ids(principal)))
    ).first()
    if row is None:
        raise _team_not_found(team_id, field)
    return row[0], row[1]


def _managed_team(principal: Principal, session: orm.Session, team_id: int) -> tuple[FamilyDoctorTeam, OrgNode]:
    """A team the caller may change: 404 outside their scope, 403 for a member who is not a manager."""
    team, institution = _visible_team(principal, session, team_id, field=None)
    if not principal.scope(*MANAGER_ROLES).covers_path(institution.path):
        raise ApiError("forbidden", "只有机构管理员或上级管理员可以调整团队", status=403)
    return team, institution


def _institution_for(session: orm.Session, node_id: int) -> OrgNode:
    """The institution a team is created under: the node itself, or the institution above an internal department."""
    node = session.get(OrgNode, node_id)
    if node is None or node.deleted_at is not None:
        raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="institution_id")
    if node.level in INSTITUTION_LEVELS:
        return node
    if node.level == "internal_department":
        chain = path_ids(node.path)
        above = {
            n.id: n
            for n in session.scalars(
                sa.select(OrgNode).where(
                    OrgNode.id.in_(chain), OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None)
                )
            )
        }
        for ancestor in reversed(chain):
            if ancestor in above:
                return above[ancestor]
    raise ApiError(
        "validation_error", "家庭医生团队须属于医共体牵头单位或成员单位（或其科室）", status=422, field="institution_id"
    )


# -- teams ------------------------------------------------------------------------------------------------------


def _member_rows(session: orm.Session, team_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    members: dict[int, list[dict[str, Any]]] = {team_id: [] for team_id in team_ids}
    if not team_ids:
        return members
    rows = session.execute(
        sa.select(TeamMember.team_id, TeamMember.role, OrgMember.id, OrgMember.userid, OrgMember.name)
        .join(OrgMember, OrgMember.id == TeamMember.member_id)
        .where(TeamMember.team_id.in_(team_ids))
        .order_by(TeamMember.team_id, TeamMember.added_at, OrgMember.id)
    )
    for team_id, role, member_id, userid, name in rows:
        members[team_id].append(
            {"member_id": member_id, "userid": userid, "name": name, "role": role, "role_name": MEMBER_ROLES[role]}
        )
    return members


def _team_view(team: FamilyDoctorTeam, institution: OrgNode, members: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "institution_id": institution.id,
        "institution_name": institution.name,
        "active": team.active,
        "members": members,
        "created_at": team.created_at,
    }


def create_team(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    if not principal.has_role(*MANAGER_ROLES):
        raise ApiError("forbidden", "只有机构管理员或上级管理员可以建立团队", status=403)
    institution = _institution_for(session, data["institution_id"])
    if not principal.scope(*MANAGER_ROLES).covers_path(institution.path):
        raise ApiError("not_found", f"组织节点 {data['institution_id']} 不存在", status=404, field="institution_id")
    name = data["name"].strip()
    exists = sa.select(FamilyDoctorTeam.id).where(
        FamilyDoctorTeam.institution_id == institution.id, FamilyDoctorTeam.name == name
    )
    if session.scalar(exists) is not None:
        raise ApiError("conflict", f"本机构已有名为“{name}”的团队", status=409, field="name")
    team = FamilyDoctorTeam(institution_id=institution.id, name=name, active=True, created_by=principal.actor)
    session.add(team)
    session.flush()
    audit.record(
        principal,
        "family_doctor.team.create",
        resource_type="family_doctor_team",
        resource_id=team.id,
        node_id=institution.id,
        session=session,
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError("conflict", f"本机构已有名为“{name}”的团队", status=409, field="name") from exc
    return _team_view(team, institution, [])


def list_teams(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    rows = session.execute(
        sa.select(FamilyDoctorTeam, OrgNode)
        .join(OrgNode, OrgNode.id == FamilyDoctorTeam.institution_id)
        .where(FamilyDoctorTeam.id.in_(visible_team_ids(principal)))
        .order_by(OrgNode.path, FamilyDoctorTeam.name)
    ).all()
    members = _member_rows(session, [team.id for team, _ in rows])
    return {"items": [_team_view(team, node, members[team.id]) for team, node in rows]}


def get_team(principal: Principal, team_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    team, institution = _visible_team(principal, session, team_id, field=None)
    return _team_view(team, institution, _member_rows(session, [team.id])[team.id])


def add_member(
    principal: Principal, team_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Put an org member on the team (or change their role). The member must still be in the org: active, not
    deleted, and in at least one live department."""
    session = session or db.session()
    team, institution = _managed_team(principal, session, team_id)
    member = session.scalar(
        sa.select(OrgMember).where(OrgMember.corp_id == institution.corp_id, OrgMember.userid == data["userid"])
    )
    in_org = (
        member is not None
        and member.active
        and member.deleted_at is None
        and session.scalar(
            sa.select(OrgMembership.node_id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgMembership.member_id == member.id, OrgNode.deleted_at.is_(None))
            .limit(1)
        )
        is not None
    )
    if not in_org:
        raise ApiError(
            "validation_error", "该人员不在组织内（已离职或不存在），不能加入团队", status=422, field="userid"
        )
    existing = session.get(TeamMember, (team.id, member.id))
    if existing is None:
        session.add(TeamMember(team_id=team.id, member_id=member.id, role=data["role"], added_by=principal.actor))
    else:
        existing.role = data["role"]
    audit.record(
        principal,
        "family_doctor.team.member_add",
        resource_type="family_doctor_team",
        resource_id=team.id,
        node_id=institution.id,
        detail={"member_id": member.id, "role": data["role"]},
        session=session,
    )
    chats.schedule_sync(session, team.id)
    session.commit()
    return get_team(principal, team.id, session)


def remove_member(principal: Principal, team_id: int, userid: str, session: orm.Session | None = None) -> dict:
    session = session or db.session()
    team, institution = _managed_team(principal, session, team_id)
    row = session.execute(
        sa.select(TeamMember)
        .join(OrgMember, OrgMember.id == TeamMember.member_id)
        .where(TeamMember.team_id == team.id, OrgMember.userid == userid)
    ).scalar_one_or_none()
    if row is None:
        raise ApiError("not_found", "该人员不在本团队", status=404, field="userid")
    session.delete(row)
    audit.record(
        principal,
        "family_doctor.team.member_remove",
        resource_type="family_doctor_team",
        resource_id=team.id,
        node_id=institution.id,
        detail={"member_id": row.member_id},
        session=session,
    )
    chats.schedule_sync(session, team.id)
    session.commit()
    return get_team(principal, team.id, session)


# -- residents and contracts ------------------------------------------------------------------------------------


def _contract_view(contract: Contract, team_name: str, on: date) -> dict[str, Any]:
    return {
        "id": contract.id,
        "team_id": contract.team_id,
        "team_name": team_name,
        "package": contract.package,
        "start_date": contract.start_date,
        "end_date": contract.end_date,
        "state": state_of(contract, on),
        "previous_id": contract.previous_id,
        "terminated_reason": contract.terminated_reason,
    }


def _resident_view(resident: Resident, on: date) -> dict[str, Any]:
    return {
        "id": resident.id,
        "name": resident.name,
        "id_number": resident.id_masked,
        "birth_date": resident.birth_date,
        "age": on.year
        - resident.birth_date.year
        - ((on.month, on.day) < (resident.birth_date.month, resident.birth_date.day)),
        "sex": resident.sex,
        "phone": resident.phone_masked,
        "address": resident.address,
        "division_code": resident.division_code,
        "tags": tags_list(resident.tags),
        "dingtalk_userid": resident.dingtalk_userid,
    }


def _resident_not_found(resident_id: Any) -> ApiError:
    return ApiError("not_found", f"居民 {resident_id} 不存在", status=404)


def resident_values(data: Mapping[str, Any], number: idcard.IdNumber, actor: str) -> dict[str, Any]:
    """Column values of a resident from validated input (shared by signing and the import)."""
    key = privacy.keyring()
    phone = (data.get("phone") or "").strip() or None
    return {
        "name": data["name"].strip(),
        "id_hash": id_hash(number.number),
        "id_cipher": privacy.encrypt_field(number.number, key, context="resident.id_number"),
        "id_masked": privacy.mask_id_number(number.number),
        "birth_date": number.birth_date,
        "sex": number.sex,
        "phone_cipher": privacy.encrypt_field(phone, key, context="resident.phone"),
        "phone_masked": privacy.mask_mobile(phone),
        "address": (data.get("address") or "").strip(),
        "division_code": data.get("division_code") or None,
        "tags": tags_column(list(data.get("tags") or [])),
        "dingtalk_userid": data.get("dingtalk_userid") or None,
        "created_by": actor,
    }


def sign(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict[str, Any]:
    """Sign a resident to a team: the resident is found by ID number (or created), and gets a new current contract.
    409 when the resident still has an active contract (at most one); an active one already past its end before
    the new start is closed as expired."""
    session = session or db.session()
    team, institution = _visible_team(principal, session, data["team_id"])
    try:
        number = idcard.parse(data["id_number"], today())
    except idcard.InvalidIdNumber as exc:
        raise ApiError("validation_error", str(exc), status=422, field="id_number") from None
    start = data.get("start_date") or today()
    end = data.get("end_date") or default_end(start)
    if problem := period_error(start, end):
        raise ApiError("validation_error", problem, status=422, field="end_date")

    values = resident_values(data, number, principal.actor)
    resident = session.scalar(sa.select(Resident).where(Resident.id_hash.in_(id_hashes(number.number))))
    if resident is not None:
        active = session.scalar(
            sa.select(Contract).where(Contract.resident_id == resident.id, Contract.status == "active")
        )
        if active is not None:
            if active.end_date >= start:
                raise ApiError("conflict", "该居民已有有效签约，请到期后续约或先解约", status=409, field="id_number")
            active.status = "expired"
        # What the signing form gives is newer than what is stored; what it leaves empty is kept.
        for column, value in values.items():
            if column not in {"id_hash", "created_by"} and value not in (None, ""):
                setattr(resident, column, value)
        chats.schedule_contract_teams(session, _current_contract_ids(session, resident.id))
        session.execute(
            sa.update(Contract).where(Contract.resident_id == resident.id, Contract.is_current).values(is_current=False)
        )
    else:
        resident = Resident(**values)
        session.add(resident)
    session.flush()
    contract = Contract(
        resident_id=resident.id,
        team_id=team.id,
        package=data.get("package") or BASIC_PACKAGE,
        start_date=start,
        end_date=end,
        status="active",
        is_current=True,
        created_by=principal.actor,
    )
    session.add(contract)
    session.flush()
    audit.record(
        principal,
        "resident.sign",
        resource_type="resident",
        resource_id=resident.id,
        node_id=institution.id,
        detail={"contract_id": contract.id, "team_id": team.id},
        session=session,
    )
    chats.schedule_sync(session, team.id)
    _commit_contract(session)
    return _resident_detail(session, resident, today())


def _current_contract_ids(session: orm.Session, resident_id: int) -> list[int]:
    return list(session.scalars(sa.select(Contract.id).where(Contract.resident_id == resident_id, Contract.is_current)))


def _commit_contract(session: orm.Session) -> None:
    try:
        session.commit()
    except IntegrityError as exc:
        # Two signings of the same resident at once: the partial unique index on active contracts decides.
        session.rollback()
        raise ApiError("conflict", "该居民已有有效签约，请到期后续约或先解约", status=409) from exc


def _visible_contract(principal: Principal, session: orm.Session, contract_id: int) -> tuple[Contract, OrgNode]:
    row = session.execute(
        sa.select(Contract, OrgNode)
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(OrgNode, OrgNode.id == FamilyDoctorTeam.institution_id)
        .where(Contract.id == contract_id, Contract.team_id.in_(visible_team_ids(principal)))
    ).first()
    if row is None:
        raise ApiError("not_found", f"签约 {contract_id} 不存在", status=404)
    return row[0], row[1]


def renew(
    principal: Principal, contract_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Renew (续约) the resident's current active contract — with the same team or, switching, another one the caller
    may act for: a new contract linked to the old (`previous_id`), which becomes `renewed`."""
    session = session or db.session()
    old, _ = _visible_contract(principal, session, contract_id)
    if old.status != "active" or not old.is_current:
        raise ApiError("invalid_state", "只有当前有效的签约可以续约", status=409, state=state_of(old))
    team, institution = _visible_team(principal, session, data.get("team_id") or old.team_id)
    start = data.get("start_date") or old.end_date + timedelta(days=1)
    if start <= old.start_date:
        raise ApiError("validation_error", "续约开始日期须晚于原签约开始日期", status=422, field="start_date")
    end = data.get("end_date") or default_end(start)
    if problem := period_error(start, end):
        raise ApiError("validation_error", problem, status=422, field="end_date")
    old.status, old.is_current = "renewed", False
    session.flush()  # the old row leaves the one-active and one-current indexes before the new one enters
    new = Contract(
        resident_id=old.resident_id,
        team_id=team.id,
        package=data.get("package") or old.package,
        start_date=start,
        end_date=end,
        status="active",
        is_current=True,
        previous_id=old.id,
        created_by=principal.actor,
    )
    session.add(new)
    session.flush()
    audit.record(
        principal,
        "resident.renew",
        resource_type="resident",
        resource_id=old.resident_id,
        node_id=institution.id,
        detail={"contract_id": new.id, "previous_id": old.id, "team_id": team.id},
        session=session,
    )
    chats.schedule_sync(session, old.team_id, team.id)
    _commit_contract(session)
    return _contract_view(new, team.name, today())


def terminate(
    principal: Principal, contract_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Terminate (解约) an active contract before its end; the resident stays on the team's list as `terminated`."""
    session = session or db.session()
    contract, institution = _visible_contract(principal, session, contract_id)
    if contract.status != "active":
        raise ApiError("invalid_state", "只有有效的签约可以解约", status=409, state=state_of(contract))
    contract.status = "terminated"
    contract.terminated_at = utcnow()
    contract.terminated_reason = (data.get("reason") or "").strip() or None
    audit.record(
        principal,
        "resident.terminate",
        resource_type="resident",
        resource_id=contract.resident_id,
        node_id=institution.id,
        detail={"contract_id": contract.id},
        session=session,
    )
    chats.schedule_sync(session, contract.team_id)
    session.commit()
    team = session.get(FamilyDoctorTeam, contract.team_id)
    return _contract_view(contract, team.name if team else "", today())


def list_residents(
    principal: Principal, filters: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """The caller's residents (by their current contract's team), filtered and paged; masked; audited once.
    `counts` (for the filter chips) are per shown state and overdue, under the team and tag filters only."""
    session = session or db.session()
    on = today()
    state = state_sql(on)
    overdue = overdue_follow_up_sql(on)
    conditions = [Contract.team_id.in_(visible_team_ids(principal))]
    if filters.get("team_id") is not None:
        conditions.append(Contract.team_id == filters["team_id"])
    if filters.get("tag"):
        conditions.append(Resident.tags.contains(f",{filters['tag']},", autoescape=True))
    stmt = (
        sa.select(Resident, Contract, FamilyDoctorTeam.name, FamilyDoctorTeam.institution_id, overdue.label("overdue"))
        .join(Contract, sa.and_(Contract.resident_id == Resident.id, Contract.is_current))
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .where(*conditions)
    )
    if filters.get("overdue_follow_up") is not None:
        stmt = stmt.where(overdue if filters["overdue_follow_up"] else ~overdue)
    if filters.get("state"):
        stmt = stmt.where(state == filters["state"])
    if filters.get("expiring_within") is not None:
        stmt = stmt.where(
            Contract.status == "active",
            Contract.end_date >= on,
            Contract.end_date <= on + timedelta(days=filters["expiring_within"]),
        )
    page, per_page = filters.get("page", 1), filters.get("per_page", 50)
    rows, total = db.paginate(stmt.order_by(Resident.id), page, per_page, rows=True, db_session=session)
    items = [
        {
            **_resident_view(resident, on),
            "contract": _contract_view(contract, team_name, on),
            "overdue_follow_up": bool(late),
        }
        for resident, contract, team_name, _, late in rows
    ]
    institutions = {row[3] for row in rows}
    audit.record(
        principal,
        "resident.list",
        resource_type="resident",
        node_id=institutions.pop() if len(institutions) == 1 else None,
        detail={
            "count": len(items),
            "total": total,
            "filters": {k: v for k, v in filters.items() if v is not None},
            "resident_ids": [item["id"] for item in items],
        },
    )
    return {
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
        "counts": _resident_counts(session, conditions, state, overdue),
    }


def overdue_follow_up_sql(on: date) -> sa.Exists:
    """An open follow-up past its due date, of the resident on their current contract's team (correlated with the
    enclosing query's `Resident` and `Contract`): one left behind on a former team is not this team's to do."""
    return (
        sa.select(FollowUp.id)
        .where(
            FollowUp.resident_id == Resident.id,
            FollowUp.team_id == Contract.team_id,
            FollowUp.done_on.is_(None),
            FollowUp.due_date < on,
        )
        .exists()
    )


def _resident_counts(
    session: orm.Session, conditions: list[sa.ColumnElement[bool]], state: sa.ColumnElement[str], overdue: sa.Exists
) -> dict[str, Any]:
    # Grouped over a subquery: PostgreSQL does not see two renderings of the state CASE (own bind parameters each)
    # as the same GROUP BY expression.
    rows = (
        sa.select(state.label("state"), sa.case((overdue, 1), else_=0).label("overdue"))
        .select_from(Resident)
        .join(Contract, sa.and_(Contract.resident_id == Resident.id, Contract.is_current))
        .where(*conditions)
        .subquery()
    )
    states: dict[str, int] = {}
    late = 0
    for code, count, overdue_count in session.execute(
        sa.select(rows.c.state, sa.func.count(), sa.func.sum(rows.c.overdue)).group_by(rows.c.state)
    ):
        states[code] = count
        late += int(overdue_count or 0)
    return {"all": sum(states.values()), "states": states, "overdue_follow_up": late}


def _resident_detail(session: orm.Session, resident: Resident, on: date) -> dict[str, Any]:
    contracts = session.execute(
        sa.select(Contract, FamilyDoctorTeam.name)
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .where(Contract.resident_id == resident.id)
        .order_by(Contract.start_date.desc(), Contract.id.desc())
    ).all()
    views = [_contract_view(contract, name, on) for contract, name in contracts]
    current = next((views[i] for i, (c, _) in enumerate(contracts) if c.is_current), None)
    return {**_resident_view(resident, on), "contract": current, "contracts": views}


def get_resident(principal: Principal, resident_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    row = session.execute(
        sa.select(Resident, FamilyDoctorTeam.institution_id)
        .join(Contract, sa.and_(Contract.resident_id == Resident.id, Contract.is_current))
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .where(Resident.id == resident_id, Contract.team_id.in_(visible_team_ids(principal)))
    ).first()
    if row is None:
        raise _resident_not_found(resident_id)
    resident, institution_id = row
    audit.record(principal, "resident.read", resource_type="resident", resource_id=resident.id, node_id=institution_id)
    return _resident_detail(session, resident, today())


# -- revealing a resident's identifiers --------------------------------------------------------------------------


def reveal_identity(
    principal: Principal, resident_id: int, reason: str, session: orm.Session | None = None
) -> dict[str, Any]:
    """The full ID number and phone of a resident, with a reason (4–200 characters) kept in the audit log.

    For the members of the resident's current team and the admins of its institution (`institution_admin`), and
    the operator: the people who call or treat the resident. Bureau and commission admins (`admin`) see the
    resident masked but may not unmask: supervision works on masked lists and figures, and a county admin who
    could unmask would reach every resident of the county (403, and the refusal is on record). Outside the
    resident's visibility it is a 404, as for `get_resident`.
    """
    session = session or db.session()
    reason = (reason or "").strip()
    if not 4 <= len(reason) <= 200:
        raise ApiError("validation_error", "请填写查看原因（4–200 个字）", status=422, field="reason")
    resident, team_id, institution_id = _caregiver_resident(
        principal,
        session,
        resident_id,
        action="family_doctor.resident.reveal",
        detail={"reason": reason},
        refusal="只有签约团队成员或本机构管理员可以查看完整身份信息",
    )
    # On record (own transaction) before the values leave; the values themselves never go into it.
    audit.record(
        principal,
        "family_doctor.resident.reveal",
        resource_type="resident",
        resource_id=resident.id,
        node_id=institution_id,
        detail={"reason": reason, "team_id": team_id, "fields": ["id_number", "phone"]},
    )
    keys = privacy.keyring()
    return {
        "resident_id": resident.id,
        "id_number": privacy.decrypt_field(resident.id_cipher, keys, context="resident.id_number"),
        "phone": privacy.decrypt_field(resident.phone_cipher, keys, context="resident.phone"),
    }


def _caregiver_resident(
    principal: Principal, session: orm.Session, resident_id: int, *, action: str, detail: dict, refusal: str
) -> tuple[Resident, int, int]:
    """The resident with their current team and institution, for the people who care for them: the team's
    members, the institution's admins and the operator. Outside the resident's visibility a 404; a viewer who is
    not a caregiver (a bureau admin) a 403, with the refusal on record as `action`."""
    row = session.execute(
        sa.select(Resident, Contract.team_id, OrgNode.id, OrgNode.path)
        .join(Contract, sa.and_(Contract.resident_id == Resident.id, Contract.is_current))
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(OrgNode, OrgNode.id == FamilyDoctorTeam.institution_id)
        .where(Resident.id == resident_id, Contract.team_id.in_(visible_team_ids(principal)))
    ).first()
    if row is None:
        raise _resident_not_found(resident_id)
    resident, team_id, institution_id, institution_path = row
    on_team = principal.member_id is not None and session.get(TeamMember, (team_id, principal.member_id)) is not None
    if not (principal.operator or on_team or principal.scope("institution_admin").covers_path(institution_path)):
        audit.record(
            principal,
            action,
            resource_type="resident",
            resource_id=resident.id,
            node_id=institution_id,
            outcome="denied",
            detail=detail,
        )
        raise ApiError("forbidden", refusal, status=403)
    return resident, team_id, institution_id


def message_resident(
    principal: Principal, resident_id: int, text: str, session: orm.Session | None = None
) -> dict[str, Any]:
    """A one-to-one robot message from the resident's team to the resident (their DingTalk account), signed with
    the team's and the sender's names. For the same people as `reveal_identity`; a resident without a DingTalk
    account is a 409 (the team reaches them by phone). Audited without the text."""
    session = session or db.session()
    text = (text or "").strip()
    if not 1 <= len(text) <= 500:
        raise ApiError("validation_error", "消息内容须为 1–500 个字", status=422, field="text")
    resident, team_id, institution_id = _caregiver_resident(
        principal,
        session,
        resident_id,
        action="family_doctor.resident.message",
        detail={},
        refusal="只有签约团队成员或本机构管理员可以给居民发消息",
    )
    if not resident.dingtalk_userid:
        raise ApiError(
            "no_dingtalk_account", "该居民未绑定钉钉账号，请通过电话等方式联系", status=409, field="resident_id"
        )
    team = session.get(FamilyDoctorTeam, team_id)
    message = messages.notice(title=f"来自{team.name}的消息", lines=[text, f"发送人：{principal.name}"])
    notices.message_resident(session, resident.id, message, key=f"family_doctor:message:{uuid.uuid4().hex}")
    audit.record(
        principal,
        "family_doctor.resident.message",
        resource_type="resident",
        resource_id=resident.id,
        node_id=institution_id,
        detail={"team_id": team_id},
        session=session,
    )
    session.commit()
    return {"resident_id": resident.id, "queued": True}
