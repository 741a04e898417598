"""Referrals (预约转诊 · 双向转诊, reference/domain.md §4): the referral, every transition it went through, its
attachments, and the appointment capacity target departments publish.

The patient travels as a snapshot (name, sex, birth date, ID number and phone as for residents: encrypted with a
keyed lookup hash and a masked copy), linked to the family-doctor registry when they are a signed resident. The
clinical summary (主诉 … current medication; for a down-referral also the rehab plan, medication list and follow-up
schedule) is one JSON document stored encrypted, like attachments' bytes: it is read only by the sides the
referral belongs to, and every read is audited.

State changes go through `states.transition` and a conditional UPDATE on `state` (two coordinators accepting at
once: one wins); each is kept in `ReferralEvent`. Timestamps of the milestones the statistics need are columns.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from workbench.db import Model, UTCDateTime, utcnow

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

MODES = {"outpatient": "门诊", "inpatient": "住院", "examination": "检查", "emergency": "急诊"}
PRIORITIES = {"routine": "普通", "urgent": "加急", "green": "绿色通道"}
# Coded reasons (domain.md §4.4), with free text beside them.
REASONS = {
    "capability": "技术/设备限制",
    "further_care": "需进一步诊治",
    "rehab_chronic": "康复/慢病管理",
    "patient_wish": "患者意愿",
}
ATTACHMENT_KINDS = {
    "lab_report": "检验报告",
    "exam_report": "检查报告",
    "image": "影像",
    "outpatient_record": "门诊病历",
    "discharge_summary": "出院小结",
    "other": "其他",
}
HALF_DAYS = {"am": "上午", "pm": "下午"}


class Referral(Model):
    __tablename__ = "referrals"
    __table_args__ = (
        sa.Index("ix_referrals_target_state", "target_institution_id", "state", "id"),
        sa.Index("ix_referrals_applicant_state", "applicant_institution_id", "state", "id"),
        # Every inbox count (service.Sides.box_arms) from the index alone, with the list's filters and a
        # township's arms (no department named, or the clinician's): migration 0016.
        sa.Index(
            "ix_referrals_target_lists",
            "target_institution_id",
            "state",
            "direction",
            "priority",
            "target_department_id",
        ),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    referral_no: orm.Mapped[str | None] = orm.mapped_column(sa.String(24), unique=True)  # ZZ20261124000123
    direction: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # states.DIRECTIONS
    mode: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # MODES
    priority: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # PRIORITIES
    state: orm.Mapped[str] = orm.mapped_column(sa.String(20), default="draft")
    # A down-referral follows the up-referral it returns from.
    parent_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("referrals.id"), index=True)

    applicant_institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    applicant_department_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    applicant_member_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_members.id"), index=True)
    target_institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    target_department_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    # Indexed: the inbox ORs it with the institution arms, and an OR uses indexes only if every arm has one.
    target_member_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_members.id"), index=True)
    reason_code: orm.Mapped[str] = orm.mapped_column(sa.String(20))  # REASONS
    reason_text: orm.Mapped[str] = orm.mapped_column(sa.String(500), default="")

    resident_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("family_doctor_residents.id"), index=True)
    patient_name: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    patient_id_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), index=True)
    patient_id_cipher: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    patient_id_masked: orm.Mapped[str] = orm.mapped_column(sa.String(24))
    patient_sex: orm.Mapped[str] = orm.mapped_column(sa.String(1))
    patient_birth_date: orm.Mapped[date] = orm.mapped_column(sa.Date)
    patient_phone_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    patient_phone_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(24))
    consent: orm.Mapped[bool] = orm.mapped_column(default=False)  # 知情同意
    consent_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())

    primary_diagnosis_code: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # ICD-10
    primary_diagnosis_name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    secondary_diagnoses: orm.Mapped[list] = orm.mapped_column(JSON, default=list)  # [{code, name}]
    clinical_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.Text)  # the clinical summary, encrypted JSON

    slot_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("referral_slots.id"), index=True)
    accepted_by_member_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_members.id"))
    # The SLA clock of the state it waits in (acceptance, acknowledgement, first follow-up): a job reminds at half
    # time and escalates at the deadline, so the timers survive restarts.
    respond_by: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime(), index=True)
    reminded_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    escalated_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())

    submitted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    accepted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    arrived_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    completed_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    closed_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ReferralEvent(Model):
    """One transition: who did what, when and why (the referral's timeline)."""

    __tablename__ = "referral_events"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    referral_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    action: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    from_state: orm.Mapped[str | None] = orm.mapped_column(sa.String(20))
    to_state: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    actor: orm.Mapped[str] = orm.mapped_column(sa.String(140))  # Principal.actor, or "system" for timers
    member_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_members.id"))
    reason: orm.Mapped[str] = orm.mapped_column(sa.String(500), default="")
    at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ReferralAttachment(Model):
    """A document that travels with the referral (report, image, discharge summary), its bytes encrypted."""

    __tablename__ = "referral_attachments"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    referral_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(20))  # ATTACHMENT_KINDS
    filename: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    content_type: orm.Mapped[str] = orm.mapped_column(sa.String(100))  # as sniffed from the bytes, not as claimed
    size: orm.Mapped[int] = orm.mapped_column()
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    content: orm.Mapped[bytes] = orm.mapped_column(sa.LargeBinary)  # encrypted
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ReferralSlot(Model):
    """Appointment capacity a target department publishes per day and half-day (号源). Accepting a referral books
    one place with a conditional UPDATE (`booked < capacity`), so concurrent accepts never overbook."""

    __tablename__ = "referral_slots"
    __table_args__ = (
        sa.UniqueConstraint("department_id", "day", "half_day"),
        sa.CheckConstraint("booked >= 0 AND booked <= capacity", name="booked_within_capacity"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    department_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    day: orm.Mapped[date] = orm.mapped_column(sa.Date)
    half_day: orm.Mapped[str] = orm.mapped_column(sa.String(2))  # HALF_DAYS
    capacity: orm.Mapped[int] = orm.mapped_column()
    booked: orm.Mapped[int] = orm.mapped_column(default=0)
    updated_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ReferralChat(Model):
    """The group chat a department (or an institution) takes referral cards in (`chats`): one per node.

    Either an existing group an administrator registers (its members are the department's business: the
    workbench cannot list a group's members, so `member_userids` is None) or a scene group the workbench creates
    with the node's members and the institution's referral coordinators (`member_userids`: who it put in, so a
    receiver who joined the department later still gets a one-to-one card). `open_conversation_id` is None only
    while a creation has not succeeded (`last_error` says why)."""

    __tablename__ = "referral_chats"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), unique=True)
    open_conversation_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    chat_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    owner_userid: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    member_userids: orm.Mapped[list | None] = orm.mapped_column(JSON)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    last_synced_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.String(300))
