"""The family-doctor app's periodic work."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from bot import messages
from bot.outbox import enqueue_message
from mini_apps.family_doctor import chats
from mini_apps.family_doctor.models import MEMBER_ROLES, FamilyDoctorTeam, TeamMember
from org_sync.models import OrgMember
from workbench import audit, db

DEPARTURE_SWEEP_SECONDS = 600


def drop_departed_members() -> int:
    """Team members who left the organisation (or were deactivated in DingTalk) leave their teams, and the team's
    leaders are told by work notice. A sweep rather than a hook in org sync: people leave through events, full
    syncs and reconciliations alike, and the sweep sees every path. Returns how many left a team."""
    session = db.session()
    departed = session.execute(
        sa.select(TeamMember, OrgMember.name, FamilyDoctorTeam.name, FamilyDoctorTeam.institution_id)
        .join(OrgMember, OrgMember.id == TeamMember.member_id)
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == TeamMember.team_id)
        .where(sa.or_(OrgMember.deleted_at.is_not(None), OrgMember.active.is_(False)))
        .order_by(TeamMember.team_id, TeamMember.member_id)
    ).all()
    by_team: dict[tuple[int, str, int], list[tuple[TeamMember, str]]] = defaultdict(list)
    for row, member_name, team_name, institution_id in departed:
        by_team[(row.team_id, team_name, institution_id)].append((row, member_name))

    for (team_id, team_name, institution_id), leaving in by_team.items():
        member_ids = [row.member_id for row, _ in leaving]
        for row, _ in leaving:
            session.delete(row)
        session.flush()
        chats.schedule_sync(session, team_id)
        leaders = session.scalars(
            sa.select(OrgMember.userid)
            .join(TeamMember, TeamMember.member_id == OrgMember.id)
            .where(
                TeamMember.team_id == team_id,
                TeamMember.role == "leader",
                OrgMember.deleted_at.is_(None),
                OrgMember.active.is_(True),
            )
        ).all()
        if leaders:
            lines = [
                f"{name}（{MEMBER_ROLES.get(row.role, row.role)}）已离开组织，已移出本团队" for row, name in leaving
            ]
            message = messages.notice(
                title=f"家庭医生团队「{team_name}」成员变动",
                lines=[*lines, "签约居民仍由本团队负责；如需补充人员，请在工作台的团队管理中添加"],
            )
            key = f"family_doctor:departed:{team_id}:{','.join(map(str, member_ids))}"
            enqueue_message("work_notice", message, idempotency_key=key, to=leaders, db=session)
        audit.record(
            None,
            "family_doctor.team.member_departed",
            resource_type="family_doctor_team",
            resource_id=team_id,
            node_id=institution_id,
            detail={"member_ids": member_ids, "leaders_told": len(leaders)},
            session=session,
        )
    session.commit()
    return len(departed)
