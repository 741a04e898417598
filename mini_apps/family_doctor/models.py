"""Family-doctor signing (家庭医生签约, reference/domain.md §5): teams, their members, residents and contracts.

Residents are not org members (获得层): they are linked to a team through a contract. A resident's **current**
contract (`is_current`, at most one per resident) is the one that decides which team sees them: signing a new
contract or renewing moves the flag, so a resident who switched teams leaves the old team's list.

Contract state: the stored `status` is `active | expired | terminated | renewed`; what the API shows adds the
calendar: an `active` contract past its end date shows as `expired`, and within 30 days of it as `expiring`
(`service.STATE_SQL`). At most one stored-`active` contract per resident (a partial unique index decides races).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import orm

from workbench.db import Model, UTCDateTime, utcnow

MEMBER_ROLES = {"leader": "团队长", "doctor": "家庭医生", "nurse": "护士", "public_health": "公卫人员"}
STATUSES = ("active", "expired", "terminated", "renewed")  # stored
STATES = ("active", "expiring", "expired", "terminated", "renewed")  # shown
# Key populations (重点人群), codes with their Chinese labels; the import accepts either.
TAGS = {
    "elderly": "老年人",
    "child": "儿童",
    "maternal": "孕产妇",
    "hypertension": "高血压",
    "diabetes": "糖尿病",
    "disabled": "残疾人",
    "severe_mental": "严重精神障碍",
    "tuberculosis": "结核病",
    "special_family": "计划生育特殊家庭",
}


class FamilyDoctorTeam(Model):
    """A family-doctor team of one institution (member institution or lead hospital)."""

    __tablename__ = "family_doctor_teams"
    __table_args__ = (sa.UniqueConstraint("institution_id", "name"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))


class TeamMember(Model):
    """An org member on a team, with their role in it."""

    __tablename__ = "family_doctor_team_members"

    team_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("family_doctor_teams.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("org_members.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # leader | doctor | nurse | public_health
    added_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    added_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))


class Resident(Model):
    """A signed resident (签约居民). The ID number and phone are stored encrypted (`*_cipher`), with a keyed hash of
    the ID number for lookups and uniqueness, and masked copies for lists (so a list never decrypts anything)."""

    __tablename__ = "family_doctor_residents"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    id_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)  # HMAC-SHA256 hex of the ID number
    id_cipher: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    id_masked: orm.Mapped[str] = orm.mapped_column(sa.String(24))
    birth_date: orm.Mapped[date] = orm.mapped_column(sa.Date)
    sex: orm.Mapped[str] = orm.mapped_column(sa.String(1))  # M | F, from the 17th digit
    phone_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    phone_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(24))
    address: orm.Mapped[str] = orm.mapped_column(sa.String(300), default="")
    division_code: orm.Mapped[str | None] = orm.mapped_column(sa.String(12), index=True)  # 6 or 12 digits
    # Key-population codes as ",elderly,diabetes," so one LIKE filters by a tag on both backends.
    tags: orm.Mapped[str] = orm.mapped_column(sa.String(200), default="")
    dingtalk_userid: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))


class Contract(Model):
    """A signing agreement (签约协议) between a resident and a team for a service package and a period."""

    __tablename__ = "family_doctor_contracts"
    __table_args__ = (
        # Re-importing a file finds the same contract by resident, team and start date.
        sa.UniqueConstraint("resident_id", "team_id", "start_date"),
        sa.Index(
            "uq_family_doctor_contracts_one_active",
            "resident_id",
            unique=True,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        ),
        sa.Index(
            "uq_family_doctor_contracts_one_current",
            "resident_id",
            unique=True,
            postgresql_where=sa.text("is_current"),
            sqlite_where=sa.text("is_current"),
        ),
        sa.Index("ix_family_doctor_contracts_team_current", "team_id", "is_current", "end_date"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    resident_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("family_doctor_residents.id", ondelete="CASCADE"))
    team_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("family_doctor_teams.id"))
    package: orm.Mapped[str] = orm.mapped_column(sa.String(40))  # 基础包 or a named package code
    start_date: orm.Mapped[date] = orm.mapped_column(sa.Date)
    end_date: orm.Mapped[date] = orm.mapped_column(sa.Date)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="active")
    is_current: orm.Mapped[bool] = orm.mapped_column(default=True)
    previous_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("family_doctor_contracts.id"), index=True)
    terminated_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    terminated_reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    source: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="manual")  # manual | import
    # When the renewal reminder (a month before the end) was queued: it goes once per contract.
    renewal_reminded_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))


class TeamChat(Model):
    """A team's signed-doctor chat (签约医生群): one DingTalk scene group per team, created on first need."""

    __tablename__ = "family_doctor_team_chats"

    team_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("family_doctor_teams.id", ondelete="CASCADE"), primary_key=True
    )
    open_conversation_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(100), unique=True)
    chat_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    owner_userid: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    synced_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.String(300))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ChatMember(Model):
    """Who DingTalk has in a team's chat, as last confirmed by a successful call: the sync diffs what should be
    there against these rows, so an interrupted sync resumes where it stopped."""

    __tablename__ = "family_doctor_chat_members"

    team_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("family_doctor_team_chats.team_id", ondelete="CASCADE"), primary_key=True
    )
    userid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # staff | resident
    added_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


FOLLOW_UP_KINDS = {"hypertension": "高血压随访", "diabetes": "2型糖尿病随访"}  # quarterly (基本公卫规范)


class FollowUp(Model):
    """A due chronic-disease follow-up (随访) of a signed resident: open until done; the next one is due a quarter
    after the last was done."""

    __tablename__ = "family_doctor_follow_ups"
    __table_args__ = (
        sa.UniqueConstraint("resident_id", "kind", "due_date"),
        sa.Index("ix_family_doctor_follow_ups_team_open", "team_id", "done_on", "due_date"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    resident_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("family_doctor_residents.id", ondelete="CASCADE"), index=True
    )
    team_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("family_doctor_teams.id"))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # FOLLOW_UP_KINDS
    due_date: orm.Mapped[date] = orm.mapped_column(sa.Date)
    done_on: orm.Mapped[date | None] = orm.mapped_column(sa.Date)
    done_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))
    note: orm.Mapped[str] = orm.mapped_column(sa.String(300), default="")
    reminded_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ServicePopulation(Model):
    """The population an institution serves (辖区常住人口), overall (`category` "all") and per key population (a
    `TAGS` code), per year: the denominators of signing coverage (签约覆盖率, domain.md §5.3)."""

    __tablename__ = "family_doctor_service_populations"

    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), primary_key=True)
    year: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    category: orm.Mapped[str] = orm.mapped_column(sa.String(20), primary_key=True)
    population: orm.Mapped[int] = orm.mapped_column()
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
