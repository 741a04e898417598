"""Reminders before due and overdue escalation (issue 9): grouped messages per chat, once per interval, up the tree.

Tasks are inserted directly (dispatch is tested in test_dispatch.py) in two member institutions of two medical
communities of one county. Chats are real scene groups of the session sandbox; escalation messages are delivered
by the outbox and read back from the sandbox, reminders (work notices to doctors who also get other tests' notices)
from the outbox rows. Every run is given its `now`: hours pass without sleeping.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot import groups, outbox
from bot.models import OutboxMessage
from mini_apps.family_doctor.models import FamilyDoctorTeam, TeamChat, TeamMember
from mini_apps.precision_control import escalation
from mini_apps.precision_control.models import (
    Campaign,
    CampaignPerson,
    ControlNotice,
    ControlTask,
    ControlTaskEvent,
    RosterImport,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from supervision.models import AlertRoute
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from workbench import db
from workbench.audit import AuditRecord
from workbench.db import utcnow


@dataclass
class Places:
    county: int
    lead_a: int
    lead_b: int
    inst_a: int  # a member institution under lead A, with its own route
    inst_b: int  # a member institution under lead B, without one: it inherits lead B's
    names: dict[int, str]
    chats: dict[str, str]  # "inst_a", "lead_a", "lead_b", "county" -> openConversationId
    mention: str
    users: list[str]


def _members_of(session, institution: int) -> list[tuple[int, str]]:
    """(member id, userid) of active members working in the institution's subtree."""
    path = session.get(OrgNode, institution).path
    return list(
        session.execute(
            sa.select(OrgMember.id, OrgMember.userid)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgNode.path.startswith(path), OrgMember.active.is_(True), OrgMember.deleted_at.is_(None))
            .distinct()
            .order_by(OrgMember.id)
        ).all()
    )


@pytest.fixture
def places(tree_app, pc_world, sandbox, tree) -> Places:
    users = sorted(u["userid"] for u in tree["users"] if u["active"])
    with tree_app.app_context():
        # The chats first: creating one records DingTalk quota use in its own transaction (SQLite: one writer).
        chats = {
            key: groups.create_scene_group(
                f"督办{key}", users[0], users[1:3], template_id="tpl-control", uuid=uuid.uuid4().hex
            ).open_conversation_id
            for key in ("inst_a", "lead_a", "lead_b", "county")
        }
        session = db.session()
        county = session.get(OrgNode, pc_world.county_id)
        leads = session.scalars(
            sa.select(OrgNode)
            .where(OrgNode.path.startswith(county.path), OrgNode.level == "medical_community_lead")
            .order_by(OrgNode.id)
        ).all()
        assert len(leads) >= 2, "the small sandbox county should have two medical communities"
        lead_a, lead_b = leads[:2]

        def member_institution(lead: OrgNode) -> int:
            return session.scalar(
                sa.select(OrgNode.id)
                .where(OrgNode.path.startswith(lead.path), OrgNode.level == "member_institution")
                .order_by(OrgNode.id)
                .limit(1)
            )

        inst_a, inst_b = member_institution(lead_a), member_institution(lead_b)
        mention = users[1]
        for node, key in ((inst_a, "inst_a"), (lead_a.id, "lead_a"), (lead_b.id, "lead_b"), (county.id, "county")):
            session.add(AlertRoute(node_id=node, conversation_id=chats[key], mention_userids=[mention], set_by="t"))
        session.commit()
        names = dict(session.execute(sa.select(OrgNode.id, OrgNode.name)).all())
    return Places(county.id, lead_a.id, lead_b.id, inst_a, inst_b, names, chats, mention, users)


def make_campaign(session, owner: int, **overrides) -> Campaign:
    values = {
        "name": "发热人员闭环管控",
        "owner_node_id": owner,
        "population": "发热门诊就诊者",
        "categories": [],
        "task_template": {"kind": "contact", "fields": []},
        "deadline_hours": {"routine": 72, "urgent": 24},
        "remind_before_hours": 12,
        "escalation_hours": [0, 24, 48],
        "repeat_interval_hours": 6,
        "index_rule": {"measure": "completion_rate", "thresholds": [60, 70, 80, 90]},
        "state": "active",
        "starts_on": date(2026, 11, 1),
        "ends_on": date(2026, 12, 31),
        "retention_until": date(2027, 6, 30),
        "created_by": "test",
    }
    campaign = Campaign(**(values | overrides))
    session.add(campaign)
    session.flush()
    return campaign


def add_tasks(session, campaign: Campaign, specs: list[dict]) -> list[int]:
    """One person and task per spec (state, due_at, county_id, institution_id, team_id, member_id); ids in order."""
    intake = RosterImport(campaign_id=campaign.id, source="api", rows=len(specs), added=len(specs), created_by="t")
    session.add(intake)
    session.flush()
    ids = []
    for spec in specs:
        person = CampaignPerson(
            campaign_id=campaign.id,
            import_id=intake.id,
            id_hash=uuid.uuid4().hex,
            id_cipher="x",
            name_masked=spec.pop("name", "张*"),
            division_code="330122001001",
            category="发热",
        )
        session.add(person)
        session.flush()
        task = ControlTask(
            campaign_id=campaign.id,
            person_id=person.id,
            state=spec.pop("state", "assigned"),
            dispatched_by="area",
            **spec,
        )
        session.add(task)
        session.flush()
        ids.append(task.id)
    return ids


def _run(app, now: datetime) -> dict:
    with app.app_context():
        result = escalation.run(now=now)
    run_jobs(app)
    return result


def _texts(sandbox, chat: str) -> list[str]:
    return [m["content"]["text"] for m in sandbox_messages(sandbox, conversation=chat, kind="robot_group")]


def _counts(sandbox, p: Places) -> dict[str, int]:
    return {key: len(_texts(sandbox, chat)) for key, chat in p.chats.items()}


def test_overdue_escalates_per_chat_once_per_interval_up_the_tree(tree_app, places, sandbox):
    p = places
    t0 = utcnow().replace(microsecond=0)
    due = t0 - timedelta(minutes=1)
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, p.county)
        a_tasks = add_tasks(
            session, campaign, [{"due_at": due, "county_id": p.county, "institution_id": p.inst_a} for _ in range(2)]
        )
        b_tasks = add_tasks(
            session,
            campaign,
            [
                {"due_at": due - timedelta(hours=hours), "county_id": p.county, "institution_id": p.inst_b}
                for hours in (0, 0, 3)
            ],
        )
        # Not overdue yet, and done: neither is in any message.
        add_tasks(
            session, campaign, [{"due_at": t0 + timedelta(days=5), "county_id": p.county, "institution_id": p.inst_a}]
        )
        add_tasks(
            session,
            campaign,
            [{"due_at": due, "county_id": p.county, "institution_id": p.inst_a, "state": "completed"}],
        )
        session.commit()
        campaign_id = campaign.id

    # Level 1: one message per institution chat — inst B's is its lead hospital's (inherited route).
    result = _run(tree_app, t0)
    assert result["escalation"]["escalated"] == 5 and result["escalation"]["messages"] == 2
    assert _counts(sandbox, p) == {"inst_a": 1, "lead_a": 0, "lead_b": 1, "county": 0}
    [a_text] = _texts(sandbox, p.chats["inst_a"])
    assert f"**{p.names[p.inst_a]}**：逾期 2 项" in a_text
    assert p.names[p.inst_b] not in a_text
    assert "共 2 项任务逾期未完成" in a_text and "机构督办（逾期超过 0 小时）" in a_text
    assert f"@{p.mention}" in a_text
    assert f"/h5/apps/precision_control/dashboard/?campaign_id={campaign_id}&node_id={p.inst_a}" in a_text
    [b_text] = _texts(sandbox, p.chats["lead_b"])
    assert f"**{p.names[p.inst_b]}**：逾期 3 项" in b_text and p.names[p.inst_a] not in b_text
    oldest = (due - timedelta(hours=3)).astimezone(escalation.CHINA).strftime("%m月%d日 %H:%M")
    assert f"最早应于 {oldest} 完成" in b_text
    assert "张*" not in a_text + b_text  # counts per unit, never persons

    # Before the repeat interval: nothing new, however often the job runs.
    for hours in (0.25, 1, 5.9):
        result = _run(tree_app, t0 + timedelta(hours=hours))
        assert result["escalation"]["messages"] == 0
    assert _counts(sandbox, p) == {"inst_a": 1, "lead_a": 0, "lead_b": 1, "county": 0}

    # After it: one repeat per chat, marked as such; then quiet again.
    result = _run(tree_app, t0 + timedelta(hours=6))
    assert result["escalation"] == {"escalated": 0, "messages": 2, "chats": 2, "unrouted": 0}
    _run(tree_app, t0 + timedelta(hours=7))
    assert _counts(sandbox, p) == {"inst_a": 2, "lead_a": 0, "lead_b": 2, "county": 0}
    assert "（持续逾期）" in _texts(sandbox, p.chats["inst_a"])[1]

    # A task done drops out of every group.
    with tree_app.app_context():
        session = db.session()
        done = session.get(ControlTask, a_tasks[0])
        done.state, done.finished_at = "completed", t0 + timedelta(hours=8)
        session.commit()

    # Past the second threshold: the communities' chats, each one message grouping its tasks; the institution's
    # own chat hears no more (its tasks are the community's business now).
    result = _run(tree_app, t0 + timedelta(hours=24))
    assert result["escalation"]["escalated"] == 4
    assert _counts(sandbox, p) == {"inst_a": 2, "lead_a": 1, "lead_b": 3, "county": 0}
    [lead_a_text] = _texts(sandbox, p.chats["lead_a"])
    assert f"**{p.names[p.inst_a]}**：逾期 1 项" in lead_a_text and "医共体督办（逾期超过 24 小时）" in lead_a_text
    lead_b_text = _texts(sandbox, p.chats["lead_b"])[2]
    assert f"**{p.names[p.inst_b]}**：逾期 3 项" in lead_b_text and "（新增）" in lead_b_text
    assert "（持续逾期）" not in lead_b_text
    _run(tree_app, t0 + timedelta(hours=25))
    assert _counts(sandbox, p) == {"inst_a": 2, "lead_a": 1, "lead_b": 3, "county": 0}

    # Past the third: inst B's oldest task first — the county's chat hears of it at once; the communities' chats
    # get their repeat (their tasks still at their level).
    result = _run(tree_app, t0 + timedelta(hours=47, minutes=30))  # that task is 50 h 31 min overdue
    assert result["escalation"]["escalated"] == 1 and result["escalation"]["messages"] == 3
    assert _counts(sandbox, p) == {"inst_a": 2, "lead_a": 2, "lead_b": 4, "county": 1}
    assert f"**{p.names[p.inst_b]}**：逾期 1 项" in _texts(sandbox, p.chats["county"])[0]
    assert f"**{p.names[p.inst_b]}**：逾期 2 项" in _texts(sandbox, p.chats["lead_b"])[3]
    # The rest reach the county inside the group interval: they wait for it, then go in one message with the whole
    # group; the communities' chats, with nothing left at their level, hear nothing.
    result = _run(tree_app, t0 + timedelta(hours=48))
    assert result["escalation"]["escalated"] == 3 and result["escalation"]["messages"] == 0
    result = _run(tree_app, t0 + timedelta(hours=48, minutes=30))
    assert result["escalation"]["messages"] == 1
    assert _counts(sandbox, p) == {"inst_a": 2, "lead_a": 2, "lead_b": 4, "county": 2}
    county_text = _texts(sandbox, p.chats["county"])[1]
    assert f"**{p.names[p.inst_a]}**：逾期 1 项" in county_text
    assert f"**{p.names[p.inst_b]}**：逾期 3 项" in county_text
    assert "共 4 项任务逾期未完成" in county_text and "县级督办（逾期超过 48 小时）" in county_text
    assert "医共体督办" not in county_text and "机构督办" not in county_text

    with tree_app.app_context():
        session = db.session()
        steps = session.execute(
            sa.select(ControlTaskEvent.task_id, ControlTaskEvent.detail)
            .where(ControlTaskEvent.action == "escalate")
            .order_by(ControlTaskEvent.id)
        ).all()
        levels: dict[int, list[int]] = {}
        for task_id, detail in steps:
            levels.setdefault(task_id, []).append(detail["level"])
        assert levels[a_tasks[0]] == [1]  # done before the second threshold
        assert levels[a_tasks[1]] == [1, 2, 3]
        assert all(levels[t] == [1, 2, 3] for t in b_tasks)
        assert len(levels) == 5
        tasks = session.scalars(sa.select(ControlTask).where(ControlTask.id.in_(a_tasks + b_tasks))).all()
        assert {t.id: t.escalation_level for t in tasks} == {a_tasks[0]: 1, **{t: 3 for t in [a_tasks[1], *b_tasks]}}
        notices = session.execute(
            sa.select(ControlNotice.node_id, ControlNotice.level, sa.func.count())
            .where(ControlNotice.campaign_id == campaign_id, ControlNotice.kind == "escalation")
            .group_by(ControlNotice.node_id, ControlNotice.level)
        ).all()
        assert sorted(notices) == sorted(
            [(p.inst_a, 1, 2), (p.lead_b, 1, 2), (p.lead_a, 2, 2), (p.lead_b, 2, 2), (p.county, 3, 2)]
        )


def test_queued_and_long_overdue_tasks_go_straight_to_the_county_in_one_message(tree_app, places, sandbox):
    p = places
    t0 = utcnow().replace(microsecond=0)
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, p.county)
        queued = add_tasks(
            session, campaign, [{"state": "queued", "due_at": t0 - timedelta(hours=1), "county_id": p.county}]
        )
        stale = add_tasks(
            session,
            campaign,
            [{"due_at": t0 - timedelta(days=3), "county_id": p.county, "institution_id": p.inst_a}],
        )
        session.commit()

    result = _run(tree_app, t0)
    assert result["escalation"]["messages"] == 1
    assert _counts(sandbox, p) == {"inst_a": 0, "lead_a": 0, "lead_b": 0, "county": 1}
    [text] = _texts(sandbox, p.chats["county"])
    assert "县级督办" in text and "机构督办" in text  # one message, a section per level
    assert f"**{p.names[p.county]}（待分派）**：逾期 1 项" in text
    assert f"**{p.names[p.inst_a]}**：逾期 1 项" in text
    assert text.index("县级督办") < text.index("机构督办")
    with tree_app.app_context():
        session = db.session()
        events = session.execute(
            sa.select(ControlTaskEvent.task_id, ControlTaskEvent.detail, ControlTaskEvent.actor)
            .where(ControlTaskEvent.action == "escalate")
            .order_by(ControlTaskEvent.task_id)
        ).all()
        assert [(e.task_id, e.detail["level"], e.detail["from_level"]) for e in events] == [
            (queued[0], 1, 0),
            (stale[0], 3, 0),  # one step, straight to the county
        ]
        assert {e.actor for e in events} == {escalation.SYSTEM_ACTOR}


def test_an_ended_campaign_neither_reminds_nor_escalates(tree_app, places, sandbox):
    p = places
    t0 = utcnow()
    with tree_app.app_context():
        session = db.session()
        doctor = _members_of(session, p.inst_a)[0][0]
        campaign = make_campaign(session, p.county, state="ended")
        ids = add_tasks(
            session,
            campaign,
            [
                {"due_at": t0 - timedelta(days=3), "county_id": p.county, "institution_id": p.inst_a},
                {
                    "due_at": t0 + timedelta(hours=2),
                    "county_id": p.county,
                    "institution_id": p.inst_a,
                    "member_id": doctor,
                },
            ],
        )
        session.commit()
        campaign_id = campaign.id
    result = _run(tree_app, t0)
    assert result["campaigns"] == 0
    assert _counts(sandbox, p) == {"inst_a": 0, "lead_a": 0, "lead_b": 0, "county": 0}
    with tree_app.app_context():
        session = db.session()
        tasks = session.scalars(sa.select(ControlTask).where(ControlTask.id.in_(ids))).all()
        assert all(t.escalation_level == 0 and t.reminded_at is None for t in tasks)
        assert session.scalar(sa.select(sa.func.count()).where(ControlNotice.campaign_id == campaign_id)) == 0
        assert (
            session.scalar(sa.select(sa.func.count()).where(OutboxMessage.idempotency_key.like("precision_control:%")))
            == 0
        )


def test_reminders_once_per_task_one_message_per_recipient(tree_app, places, sandbox):
    p = places
    t0 = utcnow().replace(microsecond=0)
    soon = t0 + timedelta(hours=5)
    with tree_app.app_context():
        team_chat = groups.create_scene_group(
            "签约医生群", p.users[0], p.users[1:3], template_id="tpl-team", uuid=uuid.uuid4().hex
        ).open_conversation_id
        session = db.session()
        (doctor, doctor_userid), (colleague, colleague_userid), *_ = _members_of(session, p.inst_a)
        (nurse, nurse_userid), *_ = _members_of(session, p.inst_b)
        chat_team = FamilyDoctorTeam(institution_id=p.inst_a, name="一团队", created_by="t")
        quiet_team = FamilyDoctorTeam(institution_id=p.inst_b, name="二团队", created_by="t")
        session.add_all([chat_team, quiet_team])
        session.flush()
        session.add(TeamChat(team_id=chat_team.id, open_conversation_id=team_chat))
        session.add(TeamMember(team_id=quiet_team.id, member_id=nurse, role="nurse", added_by="t"))
        for member in (doctor, colleague):
            session.add(TeamMember(team_id=chat_team.id, member_id=member, role="doctor", added_by="t"))
        campaign = make_campaign(session, p.county)
        other = make_campaign(session, p.county, name="另一专项")

        def task(**spec) -> dict:
            return {"county_id": p.county, "institution_id": p.inst_a, "due_at": soon} | spec

        mine = add_tasks(
            session,
            campaign,
            [
                task(member_id=doctor, name="王*", due_at=soon + timedelta(hours=i), state=state)
                for i, state in enumerate(["assigned", "accepted", "in_progress"])
            ],
        )
        later = add_tasks(session, campaign, [task(member_id=doctor, name="晚*", due_at=t0 + timedelta(hours=20))])
        add_tasks(
            session,
            campaign,
            [
                task(member_id=colleague, name="李*"),
                task(team_id=chat_team.id, name="赵*"),
                task(team_id=chat_team.id, name="钱*"),
                task(team_id=quiet_team.id, institution_id=p.inst_b, name="孙*"),
                task(name="周*"),  # the institution only: its route's chat
                task(member_id=doctor, name="完*", state="completed"),
                task(member_id=doctor, name="过*", due_at=t0 - timedelta(hours=1)),  # overdue: escalation's
            ],
        )
        add_tasks(session, other, [task(member_id=doctor, name="他*")])
        session.commit()
        campaign_id, other_id = campaign.id, other.id

    result = _run(tree_app, t0)
    # One message per destination: the doctor's own tasks and their team's unclaimed ones in one notice.
    assert result["reminders"] == {"messages": 5, "tasks": 9, "unreached": 0}

    def rows(campaign: int) -> list[OutboxMessage]:
        with tree_app.app_context():
            return list(
                db.session().scalars(
                    sa.select(OutboxMessage)
                    .where(OutboxMessage.idempotency_key.like(f"precision_control:reminder:{campaign}:%"))
                    .order_by(OutboxMessage.id)
                )
            )

    sent = rows(campaign_id)
    assert len(sent) == 4
    by_recipient = {(r.channel, r.target, tuple(r.recipients)): r.payload["text"] for r in sent}
    doctor_text = by_recipient[("work_notice", "", (doctor_userid,))]
    assert "5 项任务将在 12 小时内到期" in doctor_text
    assert doctor_text.count("王*") == 3 and "赵*" in doctor_text and "钱*" in doctor_text
    assert "晚*" not in doctor_text and "完*" not in doctor_text
    assert "过*" not in doctor_text and "他*" not in doctor_text
    assert "/h5/apps/precision_control/?filter=soon" in doctor_text
    first_due = soon.astimezone(escalation.CHINA).strftime("%m月%d日 %H:%M")
    assert f"截止 {first_due}" in doctor_text
    colleague_text = by_recipient[("work_notice", "", (colleague_userid,))]
    assert "3 项任务" in colleague_text and "李*" in colleague_text and "赵*" in colleague_text
    # Never the signed-doctor chat (residents are members of it).
    assert not any(target == team_chat for _, target, _ in by_recipient)
    assert "孙*" in by_recipient[("work_notice", "", (nurse_userid,))]
    # A chat holds people who do not work the task: counts and times, no names.
    route_text = by_recipient[("robot_group", p.chats["inst_a"], ())]
    assert "1 项任务" in route_text and "周*" not in route_text and f"@{p.mention}" in route_text
    assert len(rows(other_id)) == 1  # the other campaign: its own message

    # Once per task, ever: the next runs send nothing until the later task enters the window on its own.
    assert _run(tree_app, t0 + timedelta(hours=1))["reminders"] == {"messages": 0, "tasks": 0, "unreached": 0}
    assert len(rows(campaign_id)) == 4
    result = _run(tree_app, t0 + timedelta(hours=8, minutes=30))
    assert result["reminders"] == {"messages": 1, "tasks": 1, "unreached": 0}
    [*_, last] = rows(campaign_id)
    assert "1 项任务" in last.payload["text"] and "晚*" in last.payload["text"]
    assert last.recipients == [doctor_userid]

    with tree_app.app_context():
        session = db.session()
        reminded = session.scalars(
            sa.select(ControlTask.id).where(
                ControlTask.campaign_id == campaign_id, ControlTask.reminded_at.is_not(None)
            )
        ).all()
        assert set(mine + later) <= set(reminded) and len(reminded) == 9
        kinds = session.scalars(sa.select(ControlNotice.kind).where(ControlNotice.campaign_id == campaign_id)).all()
        assert kinds.count("reminder") == 5
        audits = session.scalars(
            sa.select(AuditRecord).where(
                AuditRecord.action == "precision_control.reminders.send", AuditRecord.resource_id == str(campaign_id)
            )
        ).all()
        assert len(audits) == 2 and audits[0].actor == "system"
    # Delivered: nothing reached the signed-doctor chat.
    assert _texts(sandbox, team_chat) == []


def test_a_big_group_is_split_under_the_size_limit_still_grouped(tree_app, places):
    p = places
    now = utcnow()
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, p.county)
        route = session.scalar(sa.select(AlertRoute).where(AlertRoute.node_id == p.county))
        units = [
            escalation.OverdueUnit(
                level=1 + n % 3,
                node_id=n,
                name=f"测试县第{n}乡镇卫生院分院" * 3,
                queue=False,
                count=n + 1,
                oldest_due=now - timedelta(hours=n),
                newest_escalation=now,
            )
            for n in range(400)
        ]
        built = escalation.escalation_messages(campaign, route, units, now, last_sent=None)
        session.rollback()
    assert len(built) > 1
    texts = [message["text"] for message, _, _ in built]
    assert all(len(text.encode()) <= outbox.MESSAGE_LIMITS["robot_group"] for text in texts)
    assert all(f"（{i}/{len(built)}）" in text for i, text in enumerate(texts, start=1))
    assert all(f"@{p.mention}" in text for text in texts)
    joined = "\n".join(texts)
    assert joined.count("\n- **") == len(units)
    assert all(joined.count(f"**{u.name}**：逾期 {u.count} 项") == 1 for u in units)
    assert sum(count for _, _, count in built) == sum(u.count for u in units)
    assert [level for _, level, _ in built] == sorted((level for _, level, _ in built), reverse=True)


def test_the_job_is_registered_every_15_minutes(tree_app):
    jobs = tree_app.extensions["workbench.queue"].periodic.values()
    [job] = [j for j in jobs if j.func == "mini_apps.precision_control.escalation.run"]
    assert job.seconds == 15 * 60


def _bulk_tasks(session, campaign: Campaign, n: int, now: datetime, places: Places, doctor: int) -> None:
    """`n` tasks in a few statements, spread over inst A (half for a named doctor, due soon), inst B and the
    county queue (overdue by days)."""
    intake = RosterImport(campaign_id=campaign.id, source="api", rows=n, added=n, created_by="t")
    session.add(intake)
    session.flush()
    session.execute(
        sa.insert(CampaignPerson),
        [
            {
                "campaign_id": campaign.id,
                "import_id": intake.id,
                "id_hash": f"{campaign.id}-{i}",
                "id_cipher": "x",
                "name_masked": "张*",
                "division_code": "330122001001",
                "category": "发热",
                "created_at": now,
            }
            for i in range(n)
        ],
    )
    persons = session.scalars(
        sa.select(CampaignPerson.id).where(CampaignPerson.campaign_id == campaign.id).order_by(CampaignPerson.id)
    ).all()
    rows = []
    for i, person in enumerate(persons):
        kind = i % 4
        rows.append(
            {
                "campaign_id": campaign.id,
                "person_id": person,
                "state": "queued" if kind == 3 else "assigned",
                "county_id": places.county,
                "institution_id": (places.inst_a, places.inst_a, places.inst_b, None)[kind],
                "member_id": doctor if kind == 0 else None,
                "due_at": now + timedelta(hours=2) if kind == 0 else now - timedelta(days=1 + i % 3),
                "escalation_level": 0,
                "updated_at": now,
            }
        )
    session.execute(sa.insert(ControlTask), rows)


def test_statements_do_not_grow_with_the_tasks(tree_app, places):
    """A campaign of 4,000 tasks takes as many SQL statements as one of 24 spread the same way (the same units,
    levels and recipients): reminders and escalation are set-based."""
    p = places
    now = utcnow()
    with tree_app.app_context():
        session = db.session()
        doctor = _members_of(session, p.inst_a)[0][0]
        small, large = make_campaign(session, p.county), make_campaign(session, p.county)
        _bulk_tasks(session, small, 24, now, p, doctor)
        _bulk_tasks(session, large, 4_000, now, p, doctor)
        session.commit()

        statements: list[str] = []

        me = threading.get_ident()

        def count(*args) -> None:
            if threading.get_ident() == me:  # not the delivery jobs a commit starts
                statements.append(args[2])

        engine = db.get_db().engine
        results = {}
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            for campaign in (small, large):
                statements.clear()
                reminded = escalation.remind(session, campaign, now)
                escalated = escalation.escalate(session, campaign, now)
                results[campaign.id] = (len(statements), reminded, escalated)
                session.commit()
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        run_jobs(tree_app)
        (small_statements, small_reminded, small_escalated) = results[small.id]
        (large_statements, large_reminded, large_escalated) = results[large.id]
        assert small_statements == large_statements
        assert (small_reminded["messages"], large_reminded["messages"]) == (1, 1)
        assert large_reminded["tasks"] == 1_000 and large_escalated["escalated"] == 3_000
        assert small_escalated["messages"] == large_escalated["messages"] >= 2
        assert session.scalar(
            sa.select(sa.func.count()).where(ControlTask.campaign_id == large.id, ControlTask.escalation_level == 3)
        ) == sum(1 for i in range(4_000) if i % 4 != 0 and i % 3 != 0)
