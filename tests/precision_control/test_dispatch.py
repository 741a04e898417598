"""Dispatch: every person exactly one task, by family doctor → campaign rule → service area → county queue; set-based
for large rosters; manual assignment and refusal recorded with reasons."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, Resident
from mini_apps.precision_control import dispatch
from mini_apps.precision_control.models import (
    Campaign,
    CampaignPerson,
    ControlTask,
    ControlTaskEvent,
    DispatchRule,
    RosterImport,
    ServiceArea,
)
from org_sync.models import OrgMember, OrgNode
from tests.precision_control.conftest import campaign_body, id_number
from workbench import db
from workbench.auth.principal import INSTITUTION_LEVELS, load_principal
from workbench.db import utcnow

API = "/api/precision-control"
UNMATCHED = "110101001001"  # Beijing: nobody here answers for it


@dataclass
class Places:
    county: int
    other_county: int
    inst_a: int
    inst_b: int
    other_inst: int
    div: str  # the county's 6-digit code
    other_div: str


def _institutions_under(session, county_id: int) -> list[int]:
    path = session.get(OrgNode, county_id).path
    return list(
        session.scalars(
            sa.select(OrgNode.id)
            .where(OrgNode.path.startswith(path), OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None))
            .order_by(OrgNode.id)
        )
    )


@pytest.fixture
def places(tree_app, pc_world) -> Places:
    with tree_app.app_context():
        session = db.session()
        mine = _institutions_under(session, pc_world.county_id)
        other = _institutions_under(session, pc_world.other_county_id)
    other_div = "339901" if pc_world.division != "339901" else "339902"
    return Places(
        pc_world.county_id, pc_world.other_county_id, mine[0], mine[-1], other[0], pc_world.division, other_div
    )


def make_campaign(session, owner: int, **overrides) -> Campaign:
    campaign = Campaign(
        name="重点人群随访",
        owner_node_id=owner,
        population="测试人群",
        categories=[],
        task_template={"kind": "follow_up", "fields": []},
        deadline_hours={"routine": 72, "urgent": 24},
        index_rule={"measure": "completion_rate", "thresholds": [60, 70, 80, 90]},
        state="active",
        starts_on=date(2026, 11, 1),
        ends_on=date(2026, 12, 31),
        retention_until=date(2027, 6, 30),
        created_by="test",
        **overrides,
    )
    session.add(campaign)
    session.flush()
    return campaign


def add_persons(session, campaign: Campaign, rows: list[dict]) -> list[int]:
    """Roster rows straight into the table (the intake is tested elsewhere); encrypted fields are dummies."""
    intake = RosterImport(campaign_id=campaign.id, source="api", rows=len(rows), added=len(rows), created_by="test")
    session.add(intake)
    session.flush()
    first = session.scalar(sa.select(sa.func.count()).select_from(CampaignPerson)) or 0
    session.execute(
        sa.insert(CampaignPerson),
        [
            {
                "campaign_id": campaign.id,
                "import_id": intake.id,
                "id_hash": f"{campaign.id}-{first + i}",
                "id_cipher": "x",
                "name_masked": "张*",
                "division_code": row["division_code"],
                "category": "发热",
                "priority": row.get("priority", "routine"),
                "resident_id": row.get("resident_id"),
                "created_at": utcnow(),
            }
            for i, row in enumerate(rows)
        ],
    )
    return list(
        session.scalars(
            sa.select(CampaignPerson.id).where(CampaignPerson.import_id == intake.id).order_by(CampaignPerson.id)
        )
    )


def signed_resident(session, team: FamilyDoctorTeam, n: int, *, current: bool = True, ended: bool = False) -> int:
    resident = Resident(
        name="李四",
        id_hash=f"resident-{n}",
        id_cipher="x",
        id_masked="3301**********0011",
        birth_date=date(1950, 1, 1),
        sex="M",
        created_by="test",
    )
    session.add(resident)
    session.flush()
    today = utcnow().date()
    session.add(
        Contract(
            resident_id=resident.id,
            team_id=team.id,
            package="基础包",
            start_date=today - timedelta(days=400 if ended else 30),
            end_date=today - timedelta(days=35) if ended else today + timedelta(days=300),
            status="active",
            is_current=current,
            created_by="test",
        )
    )
    session.flush()
    return resident.id


def team_of(session, institution: int, name: str) -> FamilyDoctorTeam:
    team = FamilyDoctorTeam(institution_id=institution, name=name, created_by="test")
    session.add(team)
    session.flush()
    return team


def tasks_by_person(session, campaign: Campaign) -> dict[int, ControlTask]:
    tasks = session.scalars(sa.select(ControlTask).where(ControlTask.campaign_id == campaign.id)).all()
    by_person = {t.person_id: t for t in tasks}
    assert len(by_person) == len(tasks)  # nobody twice
    return by_person


def test_routes_every_person_once(tree_app, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, p.county)
        team_a = team_of(session, p.inst_a, "一团队")
        team_b = team_of(session, p.inst_b, "二团队")
        session.add_all(
            [
                ServiceArea(division_code=p.div, node_id=p.county, set_by="test"),
                ServiceArea(division_code=p.div + "001", node_id=p.inst_a, set_by="test"),
                ServiceArea(division_code=p.div + "001002", node_id=p.inst_b, team_id=team_b.id, set_by="test"),
                ServiceArea(division_code=p.other_div + "001", node_id=p.other_inst, set_by="test"),
                DispatchRule(
                    campaign_id=campaign.id,
                    division_prefix=p.div + "007",
                    node_id=p.inst_b,
                    team_id=team_b.id,
                    created_by="test",
                ),
                DispatchRule(
                    campaign_id=campaign.id, division_prefix=p.div + "007008", node_id=p.inst_a, created_by="test"
                ),
                # A rule of another campaign changes nothing here.
                DispatchRule(
                    campaign_id=make_campaign(session, p.county).id,
                    division_prefix=p.div,
                    node_id=p.inst_b,
                    created_by="test",
                ),
            ]
        )
        with_doctor = signed_resident(session, team_a, 1)
        not_current = signed_resident(session, team_a, 2, current=False)
        ended = signed_resident(session, team_a, 3, ended=True)
        # Signed with a team across the county line: the county's campaign routes them by its own areas.
        across = signed_resident(session, team_of(session, p.other_inst, "外县团队"), 4)
        rows = {
            "area12": {"division_code": p.div + "001002"},
            "area9": {"division_code": p.div + "001009"},
            "area6_county": {"division_code": p.div + "009001"},
            "county_code": {"division_code": p.other_div + "009001"},
            "unmatched": {"division_code": UNMATCHED},
            "rule9": {"division_code": p.div + "007001", "priority": "urgent"},
            "rule12": {"division_code": p.div + "007008"},
            "family_doctor": {"division_code": p.div + "001002", "resident_id": with_doctor},
            "not_current": {"division_code": p.div + "001009", "resident_id": not_current},
            "ended": {"division_code": p.div + "001009", "resident_id": ended},
            "across": {"division_code": p.div + "001009", "resident_id": across},
        }
        ids = dict(zip(rows, add_persons(session, campaign, list(rows.values())), strict=True))
        session.commit()

        before = utcnow()
        result = dispatch.dispatch_persons(session, campaign)
        session.commit()
        assert result["created"] == result["persons"] == len(rows)
        assert (result["assigned"], result["queued"], result["unassigned_county"]) == (8, 3, 1)
        assert result["by"] == {"area": 5, "rule": 2, "family_doctor": 1, "queue": 3}

        tasks = tasks_by_person(session, campaign)
        assert set(tasks) == set(ids.values())

        def where(key: str) -> tuple:
            t = tasks[ids[key]]
            return t.state, t.dispatched_by, t.county_id, t.institution_id, t.team_id

        assert where("area12") == ("assigned", "area", p.county, p.inst_b, team_b.id)
        assert where("area9") == ("assigned", "area", p.county, p.inst_a, None)
        assert where("area6_county") == ("queued", None, p.county, None, None)
        assert where("county_code") == ("queued", None, p.other_county, None, None)
        assert where("unmatched") == ("queued", None, None, None, None)
        assert where("rule9") == ("assigned", "rule", p.county, p.inst_b, team_b.id)  # the rule beats the areas
        assert where("rule12") == ("assigned", "rule", p.county, p.inst_a, None)  # the longest rule wins
        assert where("family_doctor") == ("assigned", "family_doctor", p.county, p.inst_a, team_a.id)
        assert where("not_current") == ("assigned", "area", p.county, p.inst_a, None)
        assert where("ended") == ("assigned", "area", p.county, p.inst_a, None)
        assert where("across") == ("assigned", "area", p.county, p.inst_a, None)

        urgent, routine = tasks[ids["rule9"]], tasks[ids["area9"]]
        assert timedelta(hours=24) <= urgent.due_at - before < timedelta(hours=25)
        assert timedelta(hours=72) <= routine.due_at - before < timedelta(hours=73)
        assert routine.assigned_at is not None and tasks[ids["unmatched"]].assigned_at is None

        events = session.scalars(
            sa.select(ControlTaskEvent).where(ControlTaskEvent.task_id.in_([t.id for t in tasks.values()]))
        ).all()
        assert sorted(e.task_id for e in events) == sorted(t.id for t in tasks.values())
        by_task = {e.task_id: e for e in events}
        assert {e.action for e in events} == {"dispatch"}
        assert by_task[tasks[ids["rule9"]].id].detail == {
            "by": "rule",
            "county_id": p.county,
            "institution_id": p.inst_b,
            "team_id": team_b.id,
            "member_id": None,
        }
        assert by_task[tasks[ids["unmatched"]].id].detail["by"] == "unmatched"
        assert by_task[tasks[ids["county_code"]].id].detail["by"] == "county_queue"
        assert by_task[tasks[ids["area9"]].id].to_state == "assigned"

        # Dispatching again adds nothing: no task, no event.
        again = dispatch.dispatch_persons(session, campaign)
        session.commit()
        assert again["created"] == 0 and again["persons"] == len(rows)
        assert len(tasks_by_person(session, campaign)) == len(rows)
        assert session.scalar(
            sa.select(sa.func.count())
            .select_from(ControlTaskEvent)
            .where(ControlTaskEvent.task_id.in_([t.id for t in tasks.values()]))
        ) == len(rows)


def test_only_the_given_persons(tree_app, places):
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, places.county)
        session.add(ServiceArea(division_code=places.div, node_id=places.inst_a, set_by="test"))
        ids = add_persons(session, campaign, [{"division_code": places.div + "001001"} for _ in range(5)])
        session.commit()
        assert dispatch.dispatch_persons(session, campaign, [])["created"] == 0
        first = dispatch.dispatch_persons(session, campaign, ids[:2])
        session.commit()
        assert (first["created"], first["persons"], first["assigned"]) == (2, 2, 2)
        assert set(tasks_by_person(session, campaign)) == set(ids[:2])
        rest = dispatch.dispatch_persons(session, campaign)
        session.commit()
        assert (rest["created"], rest["persons"]) == (3, 5)
        assert set(tasks_by_person(session, campaign)) == set(ids)


def test_deleted_node_does_not_take_tasks(tree_app, places):
    """An area whose unit has gone from the tree is skipped: the next longer-or-shorter match decides."""
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, places.county)
        session.add_all(
            [
                ServiceArea(division_code=places.div, node_id=places.inst_a, set_by="test"),
                ServiceArea(division_code=places.div + "001", node_id=places.inst_b, set_by="test"),
            ]
        )
        session.get(OrgNode, places.inst_b).deleted_at = utcnow()
        [person] = add_persons(session, campaign, [{"division_code": places.div + "001001"}])
        session.commit()
        dispatch.dispatch_persons(session, campaign)
        session.commit()
        assert tasks_by_person(session, campaign)[person].institution_id == places.inst_a


def test_large_roster_constant_statements(tree_app, places):
    """20,000 persons take as many SQL statements as 20: the dispatch is set-based."""
    p = places
    with tree_app.app_context():
        session = db.session()
        team = team_of(session, p.inst_a, "大团队")
        session.add_all(
            [
                ServiceArea(division_code=p.div, node_id=p.county, set_by="test"),
                ServiceArea(division_code=p.div + "001", node_id=p.inst_a, set_by="test"),
                ServiceArea(division_code=p.div + "002", node_id=p.inst_b, set_by="test"),
            ]
        )
        residents = [signed_resident(session, team, 100 + i) for i in range(10)]
        small, large = make_campaign(session, p.county), make_campaign(session, p.county)
        session.add(DispatchRule(campaign_id=large.id, division_prefix=p.div + "003", node_id=p.inst_b, created_by="t"))

        def roster(n: int) -> list[dict]:
            codes = [p.div + "001001", p.div + "002001", p.div + "003001", p.div + "009", UNMATCHED]
            rows = [
                {"division_code": codes[i % len(codes)], "priority": ("routine", "urgent")[i % 2]} for i in range(n)
            ]
            for i, resident in enumerate(residents):
                rows[i * 2]["resident_id"] = resident
            return rows

        add_persons(session, small, roster(20))
        large_ids = add_persons(session, large, roster(20_000))
        session.commit()

        statements: list[str] = []

        def count(*args) -> None:
            statements.append(args[2])

        engine = db.get_db().engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            dispatch.dispatch_persons(session, small)
            for_small = len(statements)
            statements.clear()
            result = dispatch.dispatch_persons(session, large)
            for_large = len(statements)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        session.commit()
        assert for_small == for_large <= 4
        assert result["created"] == result["persons"] == 20_000
        # A fifth of the persons per code; the 10 residents (two per code) went to their team instead.
        assert result["by"] == {"family_doctor": 10, "area": 2 * 3_998, "rule": 3_998, "queue": 2 * 3_998}
        assert (result["assigned"], result["queued"], result["unassigned_county"]) == (12_004, 7_996, 3_998)
        tasks = tasks_by_person(session, large)
        assert set(tasks) == set(large_ids)
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(ControlTaskEvent)
                .join(ControlTask, ControlTask.id == ControlTaskEvent.task_id)
                .where(ControlTask.campaign_id == large.id)
            )
            == 20_000
        )


# -- manual steps over HTTP --------------------------------------------------------------------------------------


def _member_principal(session, userid: str):
    member_id = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == userid))
    return load_principal(session, member_id)


def test_queue_assign_refuse(tree_app, tree_client, pc_world, places):
    p, w = places, pc_world
    with tree_app.app_context():
        session = db.session()
        clinic = _member_principal(session, w.clinician.userid).institution_ids()[0]
        campaign = make_campaign(session, p.county)
        session.add(ServiceArea(division_code=p.div, node_id=p.county, set_by="test"))
        queued_person, _ = add_persons(
            session, campaign, [{"division_code": p.div + "009001"}, {"division_code": UNMATCHED}]
        )
        dispatch.dispatch_persons(session, campaign)
        session.commit()
        task_id = tasks_by_person(session, campaign)[queued_person].id
        campaign_id = campaign.id

    queue = tree_client.get(f"{API}/campaigns/{campaign_id}/queue", headers=w.county_admin.headers)
    assert queue.status_code == 200, queue.get_json()
    # The county sees its own queue and, owning the campaign, the persons no county answers for.
    assert queue.get_json()["total"] == 2
    mine = next(i for i in queue.get_json()["items"] if i["id"] == task_id)
    assert (mine["name_masked"], mine["county_id"], mine["state"]) == ("张*", p.county, "queued")
    assert "id_cipher" not in mine and "name_cipher" not in mine
    other = tree_client.get(f"{API}/campaigns/{campaign_id}/queue", headers=w.other_county_admin.headers)
    assert (other.status_code, other.get_json()["total"]) == (200, 0)
    assert tree_client.get(f"{API}/campaigns/{campaign_id}/queue", headers=w.clinician.headers).status_code == 404
    assert tree_client.get(f"{API}/campaigns/999999/queue", headers=w.county_admin.headers).status_code == 404

    assign = f"{API}/tasks/{task_id}/assign"
    for body, field in [
        ({"node_id": clinic}, "reason"),
        ({"node_id": clinic, "reason": "   "}, "reason"),
        ({"node_id": "x", "reason": "人工"}, "node_id"),
        ({"node_id": p.other_inst, "reason": "人工"}, "node_id"),
        ({"node_id": p.county, "reason": "人工"}, "node_id"),  # a bureau is not an institution
        ({"node_id": clinic, "team_id": 999999, "reason": "人工"}, "team_id"),
        ({"node_id": clinic, "member_id": 999999, "reason": "人工"}, "member_id"),
    ]:
        reply = tree_client.post(assign, json=body, headers=w.county_admin.headers)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, field), (body, reply.get_json())
    assert (
        tree_client.post(assign, json={"node_id": clinic, "reason": "人工"}, headers=w.clinician.headers).status_code
        == 403
    )
    wrong = tree_client.post(
        assign, json={"node_id": p.other_inst, "reason": "人工"}, headers=w.other_county_admin.headers
    )
    assert wrong.status_code == 404
    missing = tree_client.post(
        f"{API}/tasks/999999/assign", json={"node_id": clinic, "reason": "人工"}, headers=w.county_admin.headers
    )
    assert missing.status_code == 404

    first = tree_client.post(assign, json={"node_id": p.inst_b, "reason": "辖区调整"}, headers=w.county_admin.headers)
    assert first.status_code == 200, first.get_json()
    assert (first.get_json()["state"], first.get_json()["institution_id"]) == ("assigned", p.inst_b)
    again = tree_client.post(assign, json={"node_id": clinic, "reason": "就近"}, headers=w.county_admin.headers)
    assert again.status_code == 200, again.get_json()
    assert (again.get_json()["institution_id"], again.get_json()["dispatched_by"]) == (clinic, "manual")

    refuse = f"{API}/tasks/{task_id}/refuse"
    blank = tree_client.post(refuse, json={"reason": ""}, headers=w.clinician.headers)
    assert (blank.status_code, blank.get_json()["error"]["field"]) == (422, "reason")
    # The county may re-assign, but only the institution refuses.
    assert tree_client.post(refuse, json={"reason": "不是我们"}, headers=w.county_admin.headers).status_code == 403
    assert (
        tree_client.post(refuse, json={"reason": "不是我们"}, headers=w.other_county_admin.headers).status_code == 404
    )
    refused = tree_client.post(refuse, json={"reason": "非本机构辖区"}, headers=w.clinician.headers)
    assert refused.status_code == 200, refused.get_json()
    assert (refused.get_json()["state"], refused.get_json()["institution_id"]) == ("queued", None)
    assert refused.get_json()["county_id"] == p.county
    twice = tree_client.post(refuse, json={"reason": "再退"}, headers=w.clinician.headers)
    assert twice.status_code in (404, 409)  # no longer the clinician's task

    with tree_app.app_context():
        session = db.session()
        events = dispatch.task_events(session, task_id)
        assert [(e.action, e.from_state, e.to_state, e.reason) for e in events] == [
            ("dispatch", None, "queued", None),
            ("assign", "queued", "assigned", "辖区调整"),
            ("reassign", "assigned", "assigned", "就近"),
            ("refuse", "assigned", "queued", "非本机构辖区"),
        ]
        assert events[2].detail["from"]["institution_id"] == p.inst_b
        assert events[2].detail["to"]["institution_id"] == clinic
        assert events[3].actor.endswith(w.clinician.userid)
        session.get(ControlTask, task_id).state = "completed"
        session.commit()
    done = tree_client.post(assign, json={"node_id": clinic, "reason": "再派"}, headers=w.county_admin.headers)
    assert done.status_code == 409


def test_concurrent_dispatches_neither_fail_nor_double(tree_app, places):
    """Two dispatches of the same roster racing (an import and an activation, say): everyone once, no error."""
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, places.county)
        session.add(ServiceArea(division_code=places.div, node_id=places.inst_a, set_by="test"))
        ids = add_persons(session, campaign, [{"division_code": places.div + f"{i % 7:03d}001"} for i in range(600)])
        session.commit()
        campaign_id = campaign.id
        engine = db.get_db().engine
        barrier = threading.Barrier(2)
        results: list[dict] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with orm.Session(engine, expire_on_commit=False) as own:
                    mine = own.get(Campaign, campaign_id)
                    own.commit()
                    barrier.wait(timeout=30)
                    results.append(dispatch.dispatch_persons(own, mine))
                    own.commit()
            except BaseException as exc:  # the assertion below reports it
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert sum(r["created"] for r in results) == 600
        session.expire_all()
        assert set(tasks_by_person(session, session.get(Campaign, campaign_id))) == set(ids)
        events = session.scalar(
            sa.select(sa.func.count())
            .select_from(ControlTaskEvent)
            .join(ControlTask, ControlTask.id == ControlTaskEvent.task_id)
            .where(ControlTask.campaign_id == campaign_id)
        )
        assert events == 600


def test_end_to_end_over_the_api(tree_app, tree_client, pc_world, places):
    """Areas and a rule set over HTTP route an activated campaign's pushed roster; the county sees the rest queued."""
    p, admin = places, pc_world.county_admin.headers
    areas = {
        "items": [{"division_code": p.div, "node_id": p.county}, {"division_code": p.div + "001", "node_id": p.inst_a}]
    }
    assert tree_client.put(f"{API}/service-areas/bulk", json=areas, headers=admin).status_code == 200
    created = tree_client.post(f"{API}/campaigns", json=campaign_body(p.county), headers=admin)
    assert created.status_code == 201, created.get_json()
    campaign_id = created.get_json()["id"]
    rule = {"division_prefix": p.div + "002", "node_id": p.inst_b}
    assert tree_client.put(f"{API}/campaigns/{campaign_id}/dispatch-rules", json=rule, headers=admin).status_code == 200
    active = tree_client.patch(f"{API}/campaigns/{campaign_id}", json={"state": "active"}, headers=admin)
    assert active.status_code == 200, active.get_json()
    codes = [p.div + "001003", p.div + "002003", p.div + "005003"]
    items = [
        {"name": f"人{n}", "id_number": id_number(70 + n), "division_code": code, "category": "发热"}
        for n, code in enumerate(codes)
    ]
    pushed = tree_client.post(f"{API}/campaigns/{campaign_id}/roster/items", json={"items": items}, headers=admin)
    assert pushed.status_code == 200, pushed.get_json()
    assert pushed.get_json()["dispatch"]["created"] == 3, pushed.get_json()
    with tree_app.app_context():
        rows = db.session().execute(
            sa.select(CampaignPerson.division_code, ControlTask.state, ControlTask.institution_id)
            .join(ControlTask, ControlTask.person_id == CampaignPerson.id)
            .where(CampaignPerson.campaign_id == campaign_id)
        )
        assert sorted(rows) == sorted(
            [(codes[0], "assigned", p.inst_a), (codes[1], "assigned", p.inst_b), (codes[2], "queued", None)]
        )
    queue = tree_client.get(f"{API}/campaigns/{campaign_id}/queue", headers=admin).get_json()
    assert [i["division_code"] for i in queue["items"]] == [codes[2]]


def test_a_rule_to_a_named_doctor(tree_app, tree_client, pc_world, places):
    p, w = places, pc_world
    with tree_app.app_context():
        session = db.session()
        doctor = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == w.clinician.userid))
        clinic = _member_principal(session, w.clinician.userid).institution_ids()[0]
        elsewhere = next(i for i in (p.inst_a, p.inst_b) if i != clinic)
        campaign = make_campaign(session, p.county)
        [person] = add_persons(session, campaign, [{"division_code": p.div + "006001"}])
        session.commit()
        campaign_id = campaign.id
    rules = f"{API}/campaigns/{campaign_id}/dispatch-rules"
    wrong = tree_client.put(
        rules,
        json={"division_prefix": p.div + "006", "node_id": elsewhere, "member_id": doctor},
        headers=w.county_admin.headers,
    )
    assert (wrong.status_code, wrong.get_json()["error"]["field"]) == (422, "member_id")
    named = tree_client.put(
        rules,
        json={"division_prefix": p.div + "006", "node_id": clinic, "member_id": doctor},
        headers=w.county_admin.headers,
    )
    assert named.status_code == 200, named.get_json()
    with tree_app.app_context():
        session = db.session()
        campaign = session.get(Campaign, campaign_id)
        dispatch.dispatch_persons(session, campaign)
        session.commit()
        task = tasks_by_person(session, campaign)[person]
        assert (task.state, task.institution_id, task.member_id, task.dispatched_by) == (
            "assigned",
            clinic,
            doctor,
            "rule",
        )
