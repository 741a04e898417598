"""Referral rules: create, read, lists, transitions and attachments. Plain functions taking the acting `Principal`.

Sides. Every referral has two institutions, and a member acts for one of them only from inside it:
- the applicant side: members holding `clinician`, `institution_admin` or `referral_coordinator` in the applicant
  institution itself (a position in it or one of its departments, or a grant on it or inside it);
- the receiving side: `institution_admin` and `referral_coordinator` of the target institution (the hospital's
  转诊办 routes between departments), the clinicians of the target department (a position in it or below it),
  and the named target doctor. When no department is named (a down-referral to a township health centre), every
  clinician of the target institution. Not every clinician of a county hospital: the patient's clinical summary
  is shared with the people who will treat them, not with several hundred colleagues in other departments.
"Held in the institution itself" matters because member institutions sit under the lead hospital in the tree: a
lead-hospital clinician's scope covers them by path, yet they do not act for the township's doctors. A
`referral_coordinator` granted on an administrative node (a county's referral office) acts for every
institution under it.

Supervision: `admin` and `supervisor` roles whose subtree (`Principal.scope`) holds either institution read the
referral and the lists, masked and without the clinical summary or attachments, and cannot act (403). Anyone else
gets 404, as if the referral did not exist.

Sharing the record: the clinical summary and attachments go to the applicant side always, and to the receiving
side only while the referral is theirs to act on (`SHARED_STATES`). Every read that returns patient data is
audited (`referral.read`, `referral.list`, `referral.attachment.read`; ids only).

State changes happen only in `apply_transition` (states.transition, the side, a conditional UPDATE on `state`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor import idcard
from mini_apps.family_doctor import service as family_doctor
from mini_apps.family_doctor.models import Contract, Resident
from mini_apps.referral import states
from mini_apps.referral.models import (
    ATTACHMENT_KINDS,
    HALF_DAYS,
    MODES,
    PRIORITIES,
    REASONS,
    Referral,
    ReferralAttachment,
    ReferralEvent,
    ReferralSlot,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from workbench import audit, db, privacy, uploads
from workbench.auth.principal import INSTITUTION_LEVELS, Principal, Scope
from workbench.db import utcnow
from workbench.errors import ApiError

SIDE_ROLES = ("clinician", "institution_admin", "referral_coordinator")
SUPERVISOR_ROLES = ("admin", "supervisor")
SUPERVISOR = "supervisor"
# The receiving side sees the clinical record while the referral is theirs to act on (issue 7).
SHARED_STATES = {
    "up": frozenset({"submitted", "accepted", "scheduled", "arrived", "in_treatment"}),
    "lateral": frozenset({"submitted", "accepted", "scheduled", "arrived", "in_treatment"}),
    "down": frozenset({"submitted", "accepted", "received_patient", "rehab_follow_up"}),
}
CLINICAL_FIELDS = (
    "chief_complaint",
    "present_illness",
    "past_history",
    "allergies",
    "physical_exam",
    "auxiliary_exams",
    "treatment",
    "medications",
)
DOWN_FIELDS = ("rehab_plan", "medication_list", "follow_up_schedule")
CLINICAL_CONTEXT = "referral.clinical"
ATTACHMENT_CONTEXT = "referral.attachment"
# Same contexts as the family-doctor registry: a resident's ciphertext and lookup hash are copied as they are, and
# a referral is found by ID number with the same hash.
ID_CONTEXT, PHONE_CONTEXT = "resident.id_number", "resident.phone"
MILESTONES = {
    "submitted": "submitted_at",
    "accepted": "accepted_at",
    "arrived": "arrived_at",
    "received_patient": "arrived_at",  # the down-referred patient reached the grassroots side
    "completed": "completed_at",
    "closed": "closed_at",
}
MAX_ATTACHMENT = 20 * 1024 * 1024
# What clinical documents are, recognised by their first bytes; the extension must agree.
SNIFFED = (
    ("application/pdf", (".pdf",)),
    ("image/png", (".png",)),
    ("image/jpeg", (".jpg", ".jpeg")),
    ("application/dicom", (".dcm", ".dicom")),
)


def _not_found(referral_id: Any) -> ApiError:
    return ApiError("not_found", f"转诊 {referral_id} 不存在", status=404)


def _invalid(field_name: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field_name)


# -- sides ------------------------------------------------------------------------------------------------------


@dataclass
class Sides:
    """Where a principal acts for referrals: institution ids per role group, plus path scopes."""

    member_id: int | None
    operator: bool = False
    institutions: set[int] = field(default_factory=set)  # any side role held inside the institution
    managers: set[int] = field(default_factory=set)  # institution_admin / referral_coordinator inside it
    wide: Scope = field(default_factory=lambda: Scope(member_id=None))  # coordinators on administrative nodes
    positions: Scope = field(default_factory=lambda: Scope(member_id=None))  # clinicians' own nodes
    supervise: Scope = field(default_factory=lambda: Scope(member_id=None))

    def of(self, referral: Referral, nodes: Mapping[int, OrgNode]) -> set[str]:
        """The sides of `referral` this principal is on (both for a lateral referral inside one institution)."""
        if self.operator:
            return {states.APPLICANT, states.RECEIVER}
        found: set[str] = set()
        applicant, target = nodes[referral.applicant_institution_id], nodes[referral.target_institution_id]
        if referral.applicant_institution_id in self.institutions or self.wide.covers_path(applicant.path):
            found.add(states.APPLICANT)
        department = nodes.get(referral.target_department_id) if referral.target_department_id else None
        if (
            referral.target_institution_id in self.managers
            or self.wide.covers_path(target.path)
            or (self.member_id is not None and referral.target_member_id == self.member_id)
            or (
                # A clinician of the target institution in (or above) the target department; the institution
                # check keeps a position at the lead hospital's root from reaching into member institutions.
                department is not None
                and self.positions.covers_path(department.path)
                and referral.target_institution_id in self.institutions
            )
            or (department is None and referral.target_institution_id in self.institutions)
        ):
            found.add(states.RECEIVER)
        if not found and (self.supervise.covers_path(applicant.path) or self.supervise.covers_path(target.path)):
            found.add(SUPERVISOR)
        if referral.state == "draft":
            found &= {states.APPLICANT}  # a draft is the applicant's own until submitted
        return found

    def _node_ids(self, session: orm.Session, scopes: Mapping[str, Scope]) -> dict[str, list[int]]:
        """The ids of the nodes inside each path scope, in one query on `org_nodes` (deleted nodes included: old
        referrals keep them). Lists of ids rather than `IN (subquery)`: PostgreSQL can put a literal list in an
        index condition (one probe per id), and cannot do that with a subquery inside an OR."""
        paths = sorted({path for scope in scopes.values() for path in scope.paths})
        found: dict[str, list[int]] = {name: [] for name in scopes}
        if not paths:
            return found
        rows = session.execute(
            sa.select(OrgNode.id, OrgNode.path).where(
                sa.or_(*(OrgNode.path.startswith(path, autoescape=True) for path in paths))
            )
        ).all()
        for name, scope in scopes.items():
            found[name] = sorted(node_id for node_id, path in rows if scope.covers_path(path))
        return found

    def box_arms(self, session: orm.Session, box: str) -> list[sa.ColumnElement[bool]]:
        """The outbox or inbox as disjoint conditions (no referral meets two): their OR is the box, and a count
        per arm added up is the box's count. Disjoint arms let each be counted by its own index scan; one OR
        over overlapping arms made PostgreSQL read the whole table for a hospital's inbox (bench/referral.py).

        The first arm is everything a member sees by institution alone (managers, coordinators on administrative
        nodes, supervisors): an index-only scan of `ix_referrals_{target,applicant}_state`. The others need more
        columns (no department named, the clinician's departments, the named doctor), each minus what the arms
        before it hold."""
        not_draft = Referral.state != "draft"
        if box == "outbox":
            return self._outbox_arms(session, not_draft)
        return self._inbox_arms(session, not_draft)

    def _outbox_arms(self, session: orm.Session, not_draft: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
        applicant = Referral.applicant_institution_id
        if self.operator or self.wide.everything:
            return [sa.true()]
        ids = self._node_ids(session, {"wide": self.wide, "supervise": self.supervise})
        own = self.institutions | set(ids["wide"])  # drafts included: the applicant side's own
        arms = [applicant.in_(sorted(own))] if own else []
        if self.supervise.everything:
            arms.append(sa.and_(not_draft, applicant.not_in(sorted(own))) if own else not_draft)
        elif watched := set(ids["supervise"]) - own:
            arms.append(sa.and_(not_draft, applicant.in_(sorted(watched))))
        return arms or [sa.false()]

    def _inbox_arms(self, session: orm.Session, not_draft: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
        target = Referral.target_institution_id
        if self.operator or self.wide.everything or self.supervise.everything:
            return [not_draft]
        # Clinicians' department subtrees matter only in institutions not already seen whole (a coordinator who is
        # also a clinician of the hospital needs none): resolved only then.
        scopes = {"wide": self.wide, "supervise": self.supervise}
        if self.institutions - self.managers:
            scopes["positions"] = self.positions
        ids = self._node_ids(session, scopes)
        whole = self.managers | set(ids["wide"]) | set(ids["supervise"])
        arms = [sa.and_(not_draft, target.in_(sorted(whole)))] if whole else []
        # Clinicians' institutions not seen whole: referrals with no department named (a down-referral to the
        # township: its family-doctor teams) and those to their departments. Disjoint from each other (the
        # department is named or not) and from arm 1 (other institutions).
        rest = sorted(self.institutions - whole)
        department = Referral.target_department_id
        mine: list[sa.ColumnElement[bool]] = []
        if rest:
            mine.append(sa.and_(target.in_(rest), department.is_(None)))
            if ids.get("positions"):
                mine.append(sa.and_(target.in_(rest), department.in_(ids["positions"])))
        arms += [sa.and_(not_draft, arm) for arm in mine]
        if self.member_id is not None:
            # The named doctor, minus what the arms above already hold.
            named = [Referral.target_member_id == self.member_id]
            if whole:
                named.append(target.not_in(sorted(whole)))
            if mine:
                named.append(sa.not_(sa.or_(*mine)))
            arms.append(sa.and_(not_draft, *named))
        return arms or [sa.false()]


def sides_of(session: orm.Session, principal: Principal) -> Sides:
    """Resolve the principal's roles to the institutions they are held in (see the module docstring)."""
    if principal.operator:
        everything = Scope(member_id=None, everything=True)
        return Sides(member_id=None, operator=True, wide=everything, supervise=everything)
    roles = [role for role in principal.roles if role.code in SIDE_ROLES]
    chains = {role.path: [int(part) for part in role.path.strip("/").split("/") if part] for role in roles}
    ids = {node for chain in chains.values() for node in chain}
    institutions_on_path = set(
        session.scalars(sa.select(OrgNode.id).where(OrgNode.id.in_(ids), OrgNode.level.in_(INSTITUTION_LEVELS)))
        if ids
        else []
    )
    sides = Sides(member_id=principal.member_id, supervise=principal.scope(*SUPERVISOR_ROLES))
    wide_paths: list[str] = []
    for role in roles:
        # The institution a role is held in: the nearest institution at or above the role's node.
        institution = next((node for node in reversed(chains[role.path]) if node in institutions_on_path), None)
        if institution is None:
            if role.code == "referral_coordinator":
                wide_paths.append(role.path)
            continue
        sides.institutions.add(institution)
        if role.code != "clinician":
            sides.managers.add(institution)
    sides.wide = Scope(member_id=None, paths=tuple(wide_paths))
    clinician_units = {role.node_id for role in roles if role.code == "clinician"}
    sides.positions = Scope(
        member_id=None, paths=tuple(p.path for p in principal.positions if p.unit_id in clinician_units)
    )
    return sides


def _nodes(session: orm.Session, referrals: list[Referral]) -> dict[int, OrgNode]:
    ids = {
        node
        for r in referrals
        for node in (
            r.applicant_institution_id,
            r.applicant_department_id,
            r.target_institution_id,
            r.target_department_id,
        )
        if node
    }
    return {node.id: node for node in session.scalars(sa.select(OrgNode).where(OrgNode.id.in_(ids)))} if ids else {}


def visible_referral(
    session: orm.Session, principal: Principal, referral_id: int
) -> tuple[Referral, dict[int, OrgNode], set[str]]:
    """The referral, its nodes and the caller's sides of it (applicant, receiver, supervisor); 404 when none."""
    referral = session.get(Referral, referral_id)
    if referral is None:
        raise _not_found(referral_id)
    nodes = _nodes(session, [referral])
    found = sides_of(session, principal).of(referral, nodes)
    if not found:
        raise _not_found(referral_id)
    return referral, nodes, found


def shares_record(referral: Referral, found: set[str]) -> bool:
    """Whether these sides see the clinical summary and attachments now."""
    if states.APPLICANT in found:
        return True
    return states.RECEIVER in found and referral.state in SHARED_STATES.get(referral.direction, frozenset())


# -- transitions ------------------------------------------------------------------------------------------------


def apply_transition(
    session: orm.Session,
    referral: Referral,
    action: str,
    *,
    actor: str,
    member_id: int | None,
    side: str,
    reason: str = "",
    now: datetime | None = None,
) -> ReferralEvent:
    """The one place a referral's state changes (see `states`): the move must apply and be `side`'s to take, or
    409 `illegal_transition` with the side's allowed actions; a move that needs a reason without one is 422. The
    UPDATE is conditional on the state read, so of two concurrent actors one wins and the other gets 409 `conflict`
    naming who acted. Records the event, milestone times and the new state's SLA clock. Does not commit."""
    from mini_apps.referral import timers

    now = now or utcnow()
    start = referral.state
    try:
        move = states.transition(referral.direction, start, action)
    except states.IllegalTransition as exc:
        raise _illegal(session, referral, action, side) from exc
    if move.side != side:
        raise _illegal(session, referral, action, side)
    reason = (reason or "").strip()
    if move.needs_reason and not reason:
        raise _invalid("reason", f"「{move.label}」须填写原因")
    values: dict[str, Any] = {
        "state": move.target,
        "respond_by": timers.deadline_for(referral.direction, referral.priority, move.target, now),
        "reminded_at": None,
        "escalated_at": None,
        "updated_at": now,
    }
    if milestone := MILESTONES.get(move.target):
        values[milestone] = now
    if move.target == "accepted":
        values["accepted_by_member_id"] = member_id
    result = session.execute(
        sa.update(Referral)
        .where(Referral.id == referral.id, Referral.state == start)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise _conflict(session, referral, start)
    for key, value in values.items():
        orm.attributes.set_committed_value(referral, key, value)
    if move.target == "cancelled" and referral.slot_id is not None:
        from mini_apps.referral import slots

        slots.release(session, referral.slot_id)
    event = ReferralEvent(
        referral_id=referral.id,
        action=action,
        from_state=start,
        to_state=move.target,
        actor=actor,
        member_id=member_id,
        reason=reason[:500],
        at=now,
    )
    session.add(event)
    session.flush()
    from mini_apps.referral import notifications

    notifications.on_transition(session, referral, event)  # cards, notices, green channel: same transaction
    return event


def _illegal(session: orm.Session, referral: Referral, action: str, side: str) -> ApiError:
    """409 with the side's allowed actions, naming who last moved the referral (a coordinator who read it after
    a colleague accepted it learns who did)."""
    allowed = states.allowed_actions(referral.direction, referral.state, side)
    label = states.STATES.get(referral.state, referral.state)
    names = "、".join(allowed) or "无"
    message = f"转诊当前为「{label}」，不能执行「{action}」；可执行：{names}"
    last = _last_event(session, referral)
    details: dict[str, Any] = {"allowed": allowed, "state": referral.state}
    if last is not None:
        message += f"（{last[0]}）"
        details["by"] = last[1]
    return ApiError("illegal_transition", message, status=409, field="action", details=details)


def _last_event(session: orm.Session, referral: Referral, start: str | None = None) -> tuple[str, str] | None:
    """ "已由X接收" and X, for the latest transition (out of `start` when given)."""
    stmt = (
        sa.select(ReferralEvent.action, OrgMember.name)
        .outerjoin(OrgMember, OrgMember.id == ReferralEvent.member_id)
        .where(ReferralEvent.referral_id == referral.id, ReferralEvent.action != "create")
        .order_by(ReferralEvent.id.desc())
        .limit(1)
    )
    if start is not None:
        stmt = stmt.where(ReferralEvent.from_state == start)
    row = session.execute(stmt).first()
    if row is None:
        return None
    action, name = row
    move = states.moves_for(referral.direction).get(action)
    who = name or "系统"
    return f"已由{who}{move.label if move else action}", who


def _conflict(session: orm.Session, referral: Referral, start: str) -> ApiError:
    """Someone else moved the referral out of `start` since it was read: name them and what they did."""
    session.expire(referral)
    last = _last_event(session, referral, start)
    if last is None:
        return ApiError("conflict", "转诊状态已变化，请刷新后重试", status=409)
    return ApiError(
        "conflict",
        f"{last[0]}（当前：{states.STATES.get(referral.state, referral.state)}）",
        status=409,
        details={"state": referral.state, "by": last[1]},
    )


def act(principal: Principal, referral_id: int, action: str, data: Mapping[str, Any], session=None) -> dict:
    """Take `action` on a referral for the caller's side; `accept` with a `slot` also books it and schedules."""
    session = session or db.session()
    referral, nodes, found = visible_referral(session, principal, referral_id)
    if found == {SUPERVISOR}:
        raise ApiError("forbidden", "监管人员可以查看转诊，但不能办理", status=403)
    move = states.moves_for(referral.direction).get(action)
    side = move.side if move is not None and move.side in found else sorted(found - {SUPERVISOR})[0]
    member_id = principal.member_id
    reason = data.get("reason") or ""
    slot = data.get("slot")
    try:
        apply_transition(
            session, referral, action, actor=principal.actor, member_id=member_id, side=side, reason=reason
        )
        if slot is not None:
            if action != "accept" or referral.target_department_id is None:
                raise _invalid("slot", "只有接收带科室的转诊时可以同时预约号源")
            from mini_apps.referral import slots

            booked = slots.book(session, referral.target_department_id, slot["day"], slot["half_day"])
            referral.slot_id = booked.id
            apply_transition(session, referral, "schedule", actor=principal.actor, member_id=member_id, side=side)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return _detail(session, principal, referral, nodes, found)


# -- create -----------------------------------------------------------------------------------------------------


def _institution_of(session: orm.Session, node: OrgNode) -> OrgNode | None:
    """The nearest live institution at or above `node`."""
    if node.level in INSTITUTION_LEVELS:
        return node
    chain = [int(part) for part in node.path.strip("/").split("/") if part]
    found = {
        n.id: n
        for n in session.scalars(
            sa.select(OrgNode).where(
                OrgNode.id.in_(chain), OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None)
            )
        )
    }
    return next((found[i] for i in reversed(chain) if i in found), None)


def _live_node(session: orm.Session, node_id: int | None, field_name: str, what: str) -> OrgNode:
    node = session.get(OrgNode, node_id) if node_id is not None else None
    if node is None or node.deleted_at is not None:
        raise _invalid(field_name, f"{what} {node_id} 不存在")
    return node


def _department_in(session: orm.Session, node_id: int, institution: OrgNode, field_name: str) -> OrgNode:
    node = _live_node(session, node_id, field_name, "科室")
    owner = _institution_of(session, node) if node.level == "internal_department" else None
    if owner is None or owner.id != institution.id:
        raise _invalid(field_name, f"科室须属于{institution.name}")
    return node


def _diagnosis(code: str, field_name: str) -> dict[str, str]:
    from mini_apps.referral import icd10

    found = icd10.lookup(code or "")
    if found is None:
        raise _invalid(field_name, f"未知的 ICD-10 诊断编码：{code}")
    return {"code": found.code, "name": found.name}


def _patient_from_resident(session: orm.Session, principal: Principal, resident_id: int) -> dict[str, Any]:
    resident = session.scalar(
        sa.select(Resident)
        .join(Contract, sa.and_(Contract.resident_id == Resident.id, Contract.is_current))
        .where(Resident.id == resident_id, Contract.team_id.in_(family_doctor.visible_team_ids(principal)))
    )
    if resident is None:
        raise _invalid("resident_id", f"签约居民 {resident_id} 不存在")
    return {
        "resident_id": resident.id,
        "patient_name": resident.name,
        "patient_id_hash": resident.id_hash,
        "patient_id_cipher": resident.id_cipher,
        "patient_id_masked": resident.id_masked,
        "patient_sex": resident.sex,
        "patient_birth_date": resident.birth_date,
        "patient_phone_cipher": resident.phone_cipher,
        "patient_phone_masked": resident.phone_masked,
    }


def _patient_entered(data: Mapping[str, Any]) -> dict[str, Any]:
    try:
        parsed = idcard.parse(data["id_number"], family_doctor.today())
    except idcard.InvalidIdNumber as exc:
        raise _invalid("patient.id_number", str(exc)) from None
    keys = privacy.keyring()
    phone = data.get("phone")
    return {
        "resident_id": None,
        "patient_name": data["name"].strip(),
        "patient_id_hash": privacy.lookup_hash(parsed.number, keys, context=ID_CONTEXT),
        "patient_id_cipher": privacy.encrypt_field(parsed.number, keys, context=ID_CONTEXT),
        "patient_id_masked": privacy.mask_id_number(parsed.number),
        "patient_sex": parsed.sex,
        "patient_birth_date": parsed.birth_date,
        "patient_phone_cipher": privacy.encrypt_field(phone, keys, context=PHONE_CONTEXT),
        "patient_phone_masked": privacy.mask_mobile(phone),
    }


PATIENT_COLUMNS = (
    "resident_id",
    "patient_name",
    "patient_id_hash",
    "patient_id_cipher",
    "patient_id_masked",
    "patient_sex",
    "patient_birth_date",
    "patient_phone_cipher",
    "patient_phone_masked",
)


def _checked_input(
    session: orm.Session, principal: Principal, sides: Sides, data: Mapping[str, Any], *, draft: Referral | None = None
) -> tuple[OrgNode, dict[str, Any]]:
    """Every check of a whole referral input (create's, and a draft's once edited): the applicant institution and
    the referral's column values, or a 422 naming the field. For a draft, the applicant institution and the
    patient (unless given again, or the down-referral now follows another up-referral) stay the draft's."""
    direction = data["direction"]

    # Applicant: the caller's institution, through the department they refer from.
    if data.get("applicant_department_id") is not None:
        department = _live_node(session, data["applicant_department_id"], "applicant_department_id", "科室")
        applicant = _institution_of(session, department)
        if department.level != "internal_department" or applicant is None:
            raise _invalid("applicant_department_id", "申请科室须为本机构的科室")
    elif draft is not None:
        # A draft stays with the institution it was written in.
        department = None
        applicant = session.get(OrgNode, draft.applicant_institution_id)
    else:
        department = None
        own = sorted(sides.institutions)
        if len(own) != 1:
            raise _invalid("applicant_department_id", "请选择申请科室")
        applicant = session.get(OrgNode, own[0])
    if applicant is None or not (
        principal.operator or applicant.id in sides.institutions or sides.wide.covers_path(applicant.path)
    ):
        raise _invalid("applicant_department_id", "申请科室须属于您所在的机构")
    if draft is not None and applicant.id != draft.applicant_institution_id:
        raise _invalid("applicant_department_id", "草稿的申请科室须属于原申请机构")

    # Target institution, department and doctor.
    target = _live_node(session, data["target_institution_id"], "target_institution_id", "接收机构")
    if target.level not in INSTITUTION_LEVELS:
        raise _invalid("target_institution_id", "接收机构须为医共体牵头单位或成员单位")
    if direction == "up" and target.id == applicant.id:
        raise _invalid("target_institution_id", "上转的接收机构不能是本机构")
    target_department = None
    if data.get("target_department_id") is not None:
        target_department = _department_in(session, data["target_department_id"], target, "target_department_id")
    elif direction != "down":
        raise _invalid("target_department_id", "请选择接收科室")
    target_member_id = None
    if data.get("target_doctor_userid"):
        target_member_id = _target_member(session, target, data["target_doctor_userid"])

    # Down-referral: follows a completed up-referral that the caller's institution treated.
    parent = None
    if direction == "down":
        parent = session.get(Referral, data.get("parent_id")) if data.get("parent_id") is not None else None
        if parent is None or parent.direction == "down" or parent.target_institution_id != applicant.id:
            raise _invalid("parent_id", "下转须关联本机构接收并已诊疗完毕的上转")
        if parent.completed_at is None or parent.state not in {"completed", "closed"}:
            raise _invalid("parent_id", "关联的上转尚未诊疗完毕")
    elif data.get("parent_id") is not None:
        raise _invalid("parent_id", "只有下转可以关联上转")

    # Patient: a visible signed resident, entered by hand, or (down-referral) the up-referral's patient.
    if data.get("resident_id") is not None:
        patient = _patient_from_resident(session, principal, data["resident_id"])
    elif data.get("patient"):
        patient = _patient_entered(data["patient"])
    elif draft is not None and (parent is None or parent.id == draft.parent_id):
        patient = {column: getattr(draft, column) for column in PATIENT_COLUMNS}
    elif parent is not None:
        patient = {column: getattr(parent, column) for column in PATIENT_COLUMNS}
    else:
        raise _invalid("patient", "请选择签约居民或填写患者信息")

    submit = bool(data.get("submit"))
    consent = bool(data.get("consent"))
    if submit and not consent:
        raise _invalid("consent", "提交转诊须患者知情同意")
    primary = _diagnosis(data["primary_diagnosis"]["code"], "primary_diagnosis.code")
    secondary = [
        _diagnosis(item["code"], f"secondary_diagnoses.{index}.code")
        for index, item in enumerate(data.get("secondary_diagnoses") or [])
    ]
    allowed_fields = CLINICAL_FIELDS + (DOWN_FIELDS if direction == "down" else ())
    clinical = {key: value for key, value in (data.get("clinical") or {}).items() if value}
    if extra := sorted(set(clinical) - set(allowed_fields)):
        raise _invalid(f"clinical.{extra[0]}", "仅下转可以填写康复计划、用药清单和随访安排")
    values = {
        "direction": direction,
        "mode": data["mode"],
        "priority": data["priority"],
        "parent_id": parent.id if parent else None,
        "applicant_institution_id": applicant.id,
        "applicant_department_id": department.id if department else None,
        "target_institution_id": target.id,
        "target_department_id": target_department.id if target_department else None,
        "target_member_id": target_member_id,
        "reason_code": data["reason_code"],
        "reason_text": (data.get("reason_text") or "").strip(),
        "consent": consent,
        "primary_diagnosis_code": primary["code"],
        "primary_diagnosis_name": primary["name"],
        "secondary_diagnoses": secondary,
        "clinical_cipher": privacy.encrypt_field(
            json.dumps(clinical, ensure_ascii=False), privacy.keyring(), context=CLINICAL_CONTEXT
        ),
        **patient,
    }
    return applicant, values


def create_referral(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict:
    """A new referral from the caller's institution: a draft, or submitted at once (`submit`). Everything is
    checked before anything is written, so a refused request stores nothing."""
    session = session or db.session()
    if principal.member_id is None:
        raise ApiError("forbidden", "转诊须由机构人员发起", status=403)
    sides = sides_of(session, principal)
    applicant, values = _checked_input(session, principal, sides, data)
    submit = bool(data.get("submit"))

    now = utcnow()
    referral = Referral(
        state="draft",
        applicant_member_id=principal.member_id,
        consent_at=now if values["consent"] else None,
        created_at=now,
        updated_at=now,
        **values,
    )
    try:
        session.add(referral)
        session.flush()
        referral.referral_no = f"ZZ{now.astimezone(family_doctor.CHINA):%Y%m%d}{referral.id:06d}"
        session.add(
            ReferralEvent(
                referral_id=referral.id,
                action="create",
                from_state=None,
                to_state="draft",
                actor=principal.actor,
                member_id=principal.member_id,
                at=now,
            )
        )
        if submit:
            apply_transition(
                session,
                referral,
                "submit",
                actor=principal.actor,
                member_id=principal.member_id,
                side=states.APPLICANT,
                now=now,
            )
        audit.record(
            principal,
            "referral.create",
            resource_type="referral",
            resource_id=referral.id,
            node_id=applicant.id,
            detail={"resident_id": referral.resident_id, "parent_id": referral.parent_id, "state": referral.state},
            session=session,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    nodes = _nodes(session, [referral])
    return _detail(session, principal, referral, nodes, {states.APPLICANT}, audited=False)


def _target_member(session: orm.Session, target: OrgNode, userid: str) -> int:
    """A live member with a position inside the target institution."""
    rows = session.execute(
        sa.select(OrgMember.id, OrgNode)
        .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
        .join(OrgNode, OrgNode.id == OrgMembership.node_id)
        .where(
            OrgMember.corp_id == target.corp_id,
            OrgMember.userid == userid,
            OrgMember.active.is_(True),
            OrgMember.deleted_at.is_(None),
            OrgNode.deleted_at.is_(None),
        )
    ).all()
    for member_id, node in rows:
        owner = _institution_of(session, node)
        if owner is not None and owner.id == target.id:
            return member_id
    raise _invalid("target_doctor_userid", "接收医生须为接收机构的在职人员")


# The request keys a draft's edit may carry (the create fields); patient and resident are given again or kept.
_DRAFT_KEYS = (
    "direction",
    "mode",
    "priority",
    "applicant_department_id",
    "target_institution_id",
    "target_department_id",
    "target_doctor_userid",
    "reason_code",
    "reason_text",
    "parent_id",
    "consent",
    "primary_diagnosis",
    "secondary_diagnoses",
)


def _draft_as_input(session: orm.Session, referral: Referral) -> dict[str, Any]:
    """A stored draft in the create request's shape, so an edit is checked as a whole referral."""
    userid = (
        session.scalar(sa.select(OrgMember.userid).where(OrgMember.id == referral.target_member_id))
        if referral.target_member_id is not None
        else None
    )
    text = privacy.decrypt_field(referral.clinical_cipher, privacy.keyring(), context=CLINICAL_CONTEXT)
    return {
        "direction": referral.direction,
        "mode": referral.mode,
        "priority": referral.priority,
        "applicant_department_id": referral.applicant_department_id,
        "target_institution_id": referral.target_institution_id,
        "target_department_id": referral.target_department_id,
        "target_doctor_userid": userid,
        "reason_code": referral.reason_code,
        "reason_text": referral.reason_text,
        "parent_id": referral.parent_id,
        "consent": referral.consent,
        "primary_diagnosis": {"code": referral.primary_diagnosis_code},
        "secondary_diagnoses": [{"code": item["code"]} for item in referral.secondary_diagnoses or []],
        "clinical": json.loads(text) if text else {},
    }


def _merged_draft(stored: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The draft with the request's fields over it. Clinical fields merge one by one (an empty one clears it); a
    new target institution drops the old one's named doctor unless one is named again."""
    merged = {**stored, **{key: changes[key] for key in _DRAFT_KEYS if key in changes}}
    if "clinical" in changes:
        merged["clinical"] = {**stored["clinical"], **(changes["clinical"] or {})}
    if "target_doctor_userid" not in changes and merged["target_institution_id"] != stored["target_institution_id"]:
        merged["target_doctor_userid"] = None
    for key in ("resident_id", "patient"):
        if changes.get(key) is not None:
            merged[key] = changes[key]
    merged["submit"] = bool(changes.get("submit"))
    return merged


def update_draft(
    principal: Principal, referral_id: int, changes: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Edit a draft by its applicant side: any of the create fields (absent ones keep their values), checked as a
    whole referral exactly as `create_referral` checks one; `submit` then submits it through the state machine.
    Read rules first (404 outside, 403 for supervisors and the receiving side); a referral past its draft is a
    409 listing what the caller may do instead. Nothing is written when a check fails."""
    session = session or db.session()
    referral, _, found = visible_referral(session, principal, referral_id)
    if states.APPLICANT not in found:
        raise ApiError("forbidden", "只有申请方可以修改转诊", status=403)
    if referral.state != "draft":
        allowed = states.allowed_actions(referral.direction, referral.state, states.APPLICANT)
        label = states.STATES.get(referral.state, referral.state)
        raise ApiError(
            "illegal_transition",
            f"转诊当前为「{label}」，只有草稿可以修改；可执行：{'、'.join(allowed) or '无'}",
            status=409,
            field="state",
            details={"allowed": allowed, "state": referral.state},
        )
    stored = _draft_as_input(session, referral)
    merged = _merged_draft(stored, changes)
    sides = sides_of(session, principal)
    applicant, values = _checked_input(session, principal, sides, merged, draft=referral)
    now = utcnow()
    values["consent_at"] = (referral.consent_at or now) if values["consent"] else None
    values["updated_at"] = now
    changed = sorted(key for key in set(_DRAFT_KEYS) | {"clinical", "patient", "resident_id"} if key in changes)
    try:
        # Conditional on still being a draft: an edit racing a submit (or a cancel) loses instead of changing a
        # referral the other side may already be reading.
        result = session.execute(
            sa.update(Referral)
            .where(Referral.id == referral.id, Referral.state == "draft")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise _conflict(session, referral, "draft")
        for key, value in values.items():
            orm.attributes.set_committed_value(referral, key, value)
        if changes.get("submit"):
            apply_transition(
                session,
                referral,
                "submit",
                actor=principal.actor,
                member_id=principal.member_id,
                side=states.APPLICANT,
                now=now,
            )
        audit.record(
            principal,
            "referral.update",
            resource_type="referral",
            resource_id=referral.id,
            node_id=applicant.id,
            detail={"fields": changed, "state": referral.state, "parent_id": referral.parent_id},
            session=session,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    nodes = _nodes(session, [referral])
    return _detail(session, principal, referral, nodes, {states.APPLICANT}, audited=False)


# -- read -------------------------------------------------------------------------------------------------------


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _summary(referral: Referral, nodes: Mapping[int, OrgNode], *, full_name: bool = False) -> dict[str, Any]:
    def name(node_id: int | None) -> str | None:
        node = nodes.get(node_id) if node_id else None
        return node.name if node else None

    return {
        "id": referral.id,
        "referral_no": referral.referral_no,
        "direction": referral.direction,
        "direction_name": states.DIRECTIONS.get(referral.direction),
        "mode": referral.mode,
        "mode_name": MODES.get(referral.mode),
        "priority": referral.priority,
        "priority_name": PRIORITIES.get(referral.priority),
        "state": referral.state,
        "state_name": states.STATES.get(referral.state),
        "parent_id": referral.parent_id,
        "applicant_institution_id": referral.applicant_institution_id,
        "applicant_institution_name": name(referral.applicant_institution_id),
        "applicant_department_id": referral.applicant_department_id,
        "applicant_department_name": name(referral.applicant_department_id),
        "applicant_member_id": referral.applicant_member_id,
        "target_institution_id": referral.target_institution_id,
        "target_institution_name": name(referral.target_institution_id),
        "target_department_id": referral.target_department_id,
        "target_department_name": name(referral.target_department_id),
        "target_member_id": referral.target_member_id,
        "reason_code": referral.reason_code,
        "reason_name": REASONS.get(referral.reason_code),
        "reason_text": referral.reason_text,
        "patient": {
            "resident_id": referral.resident_id,
            "name": referral.patient_name if full_name else privacy.mask_name(referral.patient_name),
            "sex": referral.patient_sex,
            "birth_date": referral.patient_birth_date,
            "age": _age(referral.patient_birth_date, family_doctor.today()),
            "id_number": referral.patient_id_masked,
            "phone": referral.patient_phone_masked,
        },
        "primary_diagnosis": {"code": referral.primary_diagnosis_code, "name": referral.primary_diagnosis_name},
        "secondary_diagnoses": referral.secondary_diagnoses or [],
        "consent": referral.consent,
        "consent_at": referral.consent_at,
        "respond_by": referral.respond_by,
        "submitted_at": referral.submitted_at,
        "accepted_at": referral.accepted_at,
        "arrived_at": referral.arrived_at,
        "completed_at": referral.completed_at,
        "closed_at": referral.closed_at,
        "created_at": referral.created_at,
        "updated_at": referral.updated_at,
    }


def _attachment_view(row: ReferralAttachment) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "kind_name": ATTACHMENT_KINDS.get(row.kind),
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "created_at": row.created_at,
    }


def _detail(
    session: orm.Session,
    principal: Principal,
    referral: Referral,
    nodes: Mapping[int, OrgNode],
    found: set[str],
    *,
    audited: bool = True,
) -> dict[str, Any]:
    shared = shares_record(referral, found)
    view = _summary(referral, nodes, full_name=shared)
    acting = sorted(found - {SUPERVISOR})
    view["sides"] = sorted(found)
    view["allowed_actions"] = [
        action
        for action in states.allowed_actions(referral.direction, referral.state)
        if states.moves_for(referral.direction)[action].side in acting
    ]
    view["slot"] = None
    if referral.slot_id is not None and (slot := session.get(ReferralSlot, referral.slot_id)) is not None:
        view["slot"] = {
            "id": slot.id,
            "day": slot.day,
            "half_day": slot.half_day,
            "half_day_name": HALF_DAYS.get(slot.half_day),
        }
    view["clinical"] = None
    view["attachments"] = None
    if shared:
        text = privacy.decrypt_field(referral.clinical_cipher, privacy.keyring(), context=CLINICAL_CONTEXT)
        view["clinical"] = json.loads(text) if text else {}
        view["attachments"] = [
            _attachment_view(row)
            for row in session.scalars(
                sa.select(ReferralAttachment)
                .where(ReferralAttachment.referral_id == referral.id)
                .order_by(ReferralAttachment.id)
            )
        ]
    if audited:
        audit.record(
            principal,
            "referral.read",
            resource_type="referral",
            resource_id=referral.id,
            node_id=audit_node(referral, found),
            detail={"resident_id": referral.resident_id, "clinical": shared, "sides": sorted(found)},
        )
    return view


def audit_node(referral: Referral, found: set[str]) -> int:
    if states.RECEIVER in found and states.APPLICANT not in found:
        return referral.target_institution_id
    return referral.applicant_institution_id


def get_referral(principal: Principal, referral_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    referral, nodes, found = visible_referral(session, principal, referral_id)
    return _detail(session, principal, referral, nodes, found)


def list_events(principal: Principal, referral_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    """The referral's timeline, oldest first: who did what, when and why."""
    session = session or db.session()
    referral, _, _ = visible_referral(session, principal, referral_id)
    moves = states.moves_for(referral.direction)
    rows = session.execute(
        sa.select(ReferralEvent, OrgMember.name)
        .outerjoin(OrgMember, OrgMember.id == ReferralEvent.member_id)
        .where(ReferralEvent.referral_id == referral.id)
        .order_by(ReferralEvent.at, ReferralEvent.id)
    ).all()
    return {
        "items": [
            {
                "id": event.id,
                "action": event.action,
                "action_name": moves[event.action].label if event.action in moves else "创建",
                "from_state": event.from_state,
                "to_state": event.to_state,
                "to_state_name": states.STATES.get(event.to_state),
                "actor": event.actor,
                "member_id": event.member_id,
                "member_name": name,
                "reason": event.reason,
                "at": event.at,
            }
            for event, name in rows
        ]
    }


def list_referrals(principal: Principal, filters: Mapping[str, Any], session: orm.Session | None = None) -> dict:
    """The caller's outbox (their institution as applicant) or inbox (as target), filtered and paged, masked;
    `counts` by state under the other filters and `total` taken from them (one statement: a grouped count per
    disjoint arm of the box, see `Sides.box_arms`); audited once per list."""
    session = session or db.session()
    sides = sides_of(session, principal)
    box = filters.get("box") or "inbox"
    arms = sides.box_arms(session, box)
    conditions = [getattr(Referral, key) == filters[key] for key in ("direction", "priority") if filters.get(key)]
    grouped = [
        sa.select(Referral.state, sa.func.count().label("n")).where(arm, *conditions).group_by(Referral.state)
        for arm in arms
    ]
    counts: dict[str, int] = {}
    for state, count in session.execute(grouped[0] if len(grouped) == 1 else sa.union_all(*grouped)):
        counts[state] = counts.get(state, 0) + count
    state = filters.get("state")
    total = counts.get(state, 0) if state else sum(counts.values())
    page, per_page = filters.get("page", 1), filters.get("per_page", 20)
    rows: list[Referral] = []
    if (page - 1) * per_page < total:  # nothing to fetch past the end
        stmt = sa.select(Referral).where(sa.or_(*arms), *conditions)
        if state:
            stmt = stmt.where(Referral.state == state)
        stmt = stmt.order_by(Referral.id.desc()).limit(per_page).offset((page - 1) * per_page)
        rows = list(session.scalars(stmt))
    nodes = _nodes(session, rows)
    items = [_summary(referral, nodes) for referral in rows]
    audit.record(
        principal,
        "referral.list",
        resource_type="referral",
        detail={
            "box": box,
            "count": len(items),
            "total": total,
            "filters": {k: v for k, v in filters.items() if v is not None},
            "referral_ids": [item["id"] for item in items],
        },
    )
    return {
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
        "counts": {"all": sum(counts.values()), "states": counts},
    }


# -- attachments ------------------------------------------------------------------------------------------------


def add_attachment(
    principal: Principal,
    referral_id: int,
    kind: str,
    filename: str,
    content: bytes,
    session: orm.Session | None = None,
) -> dict[str, Any]:
    """Attach a document (PDF, PNG, JPEG or DICOM, ≤ 20 MB, recognised from its bytes) to a referral the caller
    shares the record of; stored encrypted with its SHA-256."""
    session = session or db.session()
    referral, _, found = visible_referral(session, principal, referral_id)
    if not shares_record(referral, found) or found == {SUPERVISOR}:
        raise ApiError("forbidden", "当前不能为该转诊上传资料", status=403)
    if referral.state in states.TERMINAL:
        raise ApiError("invalid_state", "转诊已结束，不能再上传资料", status=409)
    if kind not in ATTACHMENT_KINDS:
        raise _invalid("kind", "未知的资料类型：" + ", ".join(ATTACHMENT_KINDS))
    if len(content) > MAX_ATTACHMENT:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    if not content:
        raise _invalid("file", "文件为空")
    if uploads.is_executable(content):
        raise ApiError("unsupported_media_type", "不接受可执行文件或脚本", status=415, field="file")
    content_type = uploads.sniff(content)
    if content_type is None:
        raise ApiError("unsupported_media_type", "只接受 PDF、PNG、JPEG 或 DICOM 文件", status=415, field="file")
    name = (filename or "").strip().replace("\\", "/").rsplit("/", 1)[-1][:200]
    extensions = dict(SNIFFED)[content_type]
    if not name.lower().endswith(extensions):
        raise ApiError(
            "unsupported_media_type", f"文件扩展名与内容不符（内容为 {content_type}）", status=415, field="file"
        )
    row = ReferralAttachment(
        referral_id=referral.id,
        kind=kind,
        filename=name,
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=privacy.encrypt_bytes(content, privacy.keyring(), context=f"{ATTACHMENT_CONTEXT}:{referral.id}"),
        created_by=principal.actor,
    )
    session.add(row)
    session.flush()
    audit.record(
        principal,
        "referral.attachment.add",
        resource_type="referral",
        resource_id=referral.id,
        node_id=audit_node(referral, found),
        detail={"attachment_id": row.id, "kind": kind, "size": row.size},
        session=session,
    )
    session.commit()
    return _attachment_view(row)


def get_attachment(
    principal: Principal, referral_id: int, attachment_id: int, session: orm.Session | None = None
) -> tuple[ReferralAttachment, bytes]:
    """The attachment and its decrypted bytes, for those who share the record now; audited."""
    session = session or db.session()
    referral, _, found = visible_referral(session, principal, referral_id)
    row = session.get(ReferralAttachment, attachment_id)
    if row is None or row.referral_id != referral.id or not shares_record(referral, found):
        raise ApiError("not_found", f"附件 {attachment_id} 不存在", status=404)
    audit.record(
        principal,
        "referral.attachment.read",
        resource_type="referral",
        resource_id=referral.id,
        node_id=audit_node(referral, found),
        detail={"attachment_id": row.id, "resident_id": referral.resident_id},
    )
    content = privacy.decrypt_bytes(row.content, privacy.keyring(), context=f"{ATTACHMENT_CONTEXT}:{referral.id}")
    return row, content


def referral_targets(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    """What the new-referral form offers: the departments the caller refers from (their positions in their own
    institutions) and the institutions of the same county they may refer to, each with its departments: the lead
    hospital(s) and the member institutions, the caller's own left out. Names only, no patient data."""
    session = session or db.session()
    sides = sides_of(session, principal)
    own = set(sides.institutions) | set(principal.institution_ids())
    applicant = [
        {"id": p.node_id, "name": p.name, "institution_id": p.unit_id, "institution_name": p.unit_name}
        for p in principal.positions
        if p.level == "internal_department" and p.unit_id in own
    ]
    institutions = list(session.scalars(sa.select(OrgNode).where(OrgNode.id.in_(own or [-1]))))
    counties = set()
    for node in institutions:
        chain = [int(part) for part in node.path.strip("/").split("/") if part]
        counties |= set(
            session.scalars(sa.select(OrgNode.path).where(OrgNode.id.in_(chain), OrgNode.level == "county_bureau"))
        )
    targets: list[dict[str, Any]] = []
    if counties:
        rows = session.scalars(
            sa.select(OrgNode)
            .where(
                sa.or_(*(OrgNode.path.startswith(path) for path in counties)),
                OrgNode.level.in_(("medical_community_lead", "member_institution")),
                OrgNode.deleted_at.is_(None),
                OrgNode.id.not_in(own or [-1]),
            )
            .order_by(OrgNode.level, OrgNode.sort_order, OrgNode.id)
        ).all()
        departments: dict[int, list[dict[str, Any]]] = {row.id: [] for row in rows}
        for dept in session.scalars(
            sa.select(OrgNode)
            .where(
                OrgNode.parent_id.in_(list(departments) or [-1]),
                OrgNode.level == "internal_department",
                OrgNode.deleted_at.is_(None),
            )
            .order_by(OrgNode.sort_order, OrgNode.id)
        ):
            departments[dept.parent_id].append({"id": dept.id, "name": dept.name})  # type: ignore[index]
        targets = [
            {"id": row.id, "name": row.name, "level": row.level, "departments": departments[row.id]} for row in rows
        ]
    return {"applicant_departments": applicant, "targets": targets}
