"""A member who leaves the organisation leaves their family-doctor teams, and the team leader is told once."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from mini_apps.family_doctor.jobs import drop_departed_members
from mini_apps.family_doctor.models import FamilyDoctorTeam, TeamMember
from org_sync.models import OrgMember
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.family_doctor.conftest import World
from workbench import db
from workbench.audit import AuditRecord
from workbench.db import utcnow

API = "/api/family-doctor"


def test_a_departed_member_leaves_the_team_and_the_leader_is_told_once(tree_app, tree_client, sandbox, world: World):
    leader = tree_client.get("/api/me", headers=world.doctor).get_json()["member"]
    colleague = tree_client.get("/api/me", headers=world.colleague).get_json()["member"]
    reply = tree_client.post(
        f"{API}/teams/{world.team_id}/members",
        json={"userid": colleague["userid"], "role": "doctor"},
        headers=world.county_admin,
    )
    assert reply.status_code == 200, reply.get_json()
    since = str(len(sandbox_messages(sandbox)))

    with tree_app.app_context():
        assert drop_departed_members() == 0  # nobody has left yet
        session = db.session()
        # The sandbox, like DingTalk, drops a work notice repeating one sent today; other runs send the same text.
        team = session.get(FamilyDoctorTeam, world.team_id)
        team.name = team_name = f"{world.team_name}{uuid.uuid4().hex[:6]}"
        member = session.get(OrgMember, colleague["id"])
        member.deleted_at = utcnow()  # as org sync records a user_leave_org
        session.commit()
        assert drop_departed_members() == 1
        assert drop_departed_members() == 0  # once
        on_team = session.scalars(sa.select(TeamMember.member_id).where(TeamMember.team_id == world.team_id)).all()
        assert on_team == [leader["id"]]
        [record] = session.scalars(
            sa.select(AuditRecord).where(AuditRecord.action == "family_doctor.team.member_departed")
        ).all()
        assert record.actor == "system" and record.detail["member_ids"] == [colleague["id"]]

    run_jobs(tree_app)
    notices = [
        m
        for m in sandbox_messages(sandbox, kind="work_notice", since=since)
        if colleague["name"] in str(m["content"]) and team_name in str(m["content"])
    ]
    assert [m["userids"] for m in notices] == [[leader["userid"]]]
    team = tree_client.get(f"{API}/teams/{world.team_id}", headers=world.county_admin).get_json()
    assert colleague["userid"] not in str(team)
