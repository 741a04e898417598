"""Retention: when a campaign's `retention_until` has passed, the retention job strips its persons' identifying data
(and the free text that could hold it) in committed batches; the aggregate figures stay the same; campaigns still
within retention are untouched; a second run does nothing; a run stopped half-way resumes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from mini_apps.precision_control import index, retention
from mini_apps.precision_control.models import (
    Campaign,
    CampaignPerson,
    ControlTask,
    ControlTaskEvent,
    RosterImport,
)
from org_sync.models import OrgMember, OrgNode
from tests.precision_control.conftest import ControlWorld, campaign_body, id_number
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import load_principal

API = "/api/precision-control"
RETAINED_UNTIL = "2027-06-30"
AFTER_RETENTION = datetime(2027, 6, 30, 16, 0, tzinfo=UTC)  # 2027-07-01 00:00 China time: the first day after
LAST_DAY = datetime(2027, 6, 30, 15, 59, tzinfo=UTC)  # 23:59 China time on the last day kept
FIGURES_AT = datetime(2027, 1, 15, tzinfo=UTC)  # a fixed "now" for the index figures (what counts as overdue)
PERSON_COLUMNS = (
    "id_hash",
    "id_cipher",
    "name_cipher",
    "phone_cipher",
    "address_cipher",
    "name_masked",
    "id_masked",
    "phone_masked",
    "source_note",
    "resident_id",
)


@dataclass
class Worked:
    campaign_id: int
    numbers: list[str]  # the ID numbers pushed, in push order
    texts: list[str]  # every piece of personal text the campaign was given (names, phones, addresses, notes)


def _member_principal(session, userid: str):
    return load_principal(session, session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == userid)))


def _ok(reply, status: int = 200) -> dict:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


def _resident(client, world: ControlWorld, institution: int) -> tuple[str, int]:
    """A family-doctor resident signed with a team of the institution: (ID number, resident id)."""
    team = _ok(
        client.post(
            "/api/family-doctor/teams",
            json={"institution_id": institution, "name": "留存测试团队"},
            headers=world.county_admin.headers,
        ),
        201,
    )
    number = id_number(900, born=date(1950, 3, 3))
    resident = _ok(
        client.post(
            "/api/family-doctor/contracts",
            json={"name": "签约甲", "id_number": number, "team_id": team["id"], "tags": ["hypertension"]},
            headers=world.county_admin.headers,
        ),
        201,
    )
    return number, resident["id"]


def _campaign(client, world: ControlWorld, people: list[dict], retention_until: str, name: str) -> int:
    """An active campaign of the county with `people` pushed through the API (dispatched on activation)."""
    body = campaign_body(world.county_id, name=name, retention_until=retention_until)
    campaign_id = _ok(client.post(f"{API}/campaigns", json=body, headers=world.county_admin.headers), 201)["id"]
    report = _ok(
        client.post(
            f"{API}/campaigns/{campaign_id}/roster/items",
            json={"items": [*people, {"name": "坏行", "id_number": "123", "division_code": world.division}]},
            headers=world.county_admin.headers,
        )
    )
    assert (report["added"], report["rejected"]) == (len(people), 1)
    activated = client.patch(
        f"{API}/campaigns/{campaign_id}", json={"state": "active"}, headers=world.county_admin.headers
    )
    _ok(activated)
    return campaign_id


def _people(world: ControlWorld, start: int, count: int, resident_number: str | None = None) -> list[dict]:
    people = [
        {
            "name": f"王{start + i}号",
            "id_number": id_number(start + i),
            "phone": f"1390000{start + i:04d}",
            "address": f"幸福路{start + i}号",
            "division_code": world.division + "001",
            "category": "发热",
            "source": f"协查{start + i}",
        }
        for i in range(count)
    ]
    if resident_number is not None:
        people[-1]["id_number"] = resident_number  # dispatched to the resident's team, left assigned
    return people


def _tasks(session, campaign_id: int) -> list[ControlTask]:
    return list(
        session.scalars(
            sa.select(ControlTask)
            .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
            .where(ControlTask.campaign_id == campaign_id)
            .order_by(CampaignPerson.id)
        )
    )


def _dump(session, campaign_id: int) -> dict:
    """Every stored column of the campaign's persons, tasks, events and imports (what 'untouched' compares)."""

    def rows(table, where) -> list:
        return list(session.execute(sa.select(table).where(where).order_by(table.c.id)))

    tasks = sa.select(ControlTask.id).where(ControlTask.campaign_id == campaign_id)
    return {
        "persons": rows(CampaignPerson.__table__, CampaignPerson.campaign_id == campaign_id),
        "tasks": rows(ControlTask.__table__, ControlTask.campaign_id == campaign_id),
        "events": rows(ControlTaskEvent.__table__, ControlTaskEvent.task_id.in_(tasks)),
        "imports": rows(RosterImport.__table__, RosterImport.campaign_id == campaign_id),
        "campaign": rows(Campaign.__table__, Campaign.id == campaign_id),
    }


def _counted(session, campaign_id: int) -> dict:
    """The aggregates counted straight from the tasks: per place, state, positive and on time."""
    on_time = sa.and_(ControlTask.finished_at.is_not(None), ControlTask.finished_at <= ControlTask.due_at)
    stmt = (
        sa.select(
            ControlTask.county_id,
            ControlTask.institution_id,
            CampaignPerson.division_code,
            CampaignPerson.category,
            ControlTask.state,
            ControlTask.positive,
            on_time.label("on_time"),
            sa.func.count(),
        )
        .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
        .where(ControlTask.campaign_id == campaign_id)
        .group_by(
            ControlTask.county_id,
            ControlTask.institution_id,
            CampaignPerson.division_code,
            CampaignPerson.category,
            ControlTask.state,
            ControlTask.positive,
            on_time,
        )
    )
    return {tuple(row[:-1]): row[-1] for row in session.execute(stmt)}


def _index(session, campaign_id: int) -> dict:
    """The index module's figures of every node (at a fixed moment)."""
    campaign = session.get(Campaign, campaign_id)
    owner = session.get(OrgNode, campaign.owner_node_id)
    figures = index.compute(session, campaign, owner, FIGURES_AT)
    return {node_id: f.view() for node_id, f in figures.by_node.items()}


@pytest.fixture
def worked(tree_app, tree_client, pc_world) -> tuple[Worked, int]:
    """Campaign A (retention to 2027-06-30) with seven persons worked to every end (completed positive and
    negative with notes, unreachable, transferred, refused back to the queue, closed) and a family-doctor resident
    left with their team; and
    campaign B (retention to 2027-12-31) pushed the same way. Returns (A, B's id)."""
    w = pc_world
    with tree_app.app_context():
        session = db.session()
        clinic = _member_principal(session, w.clinician.userid).institution_ids()[0]
    _ok(
        tree_client.put(
            f"{API}/service-areas",
            json={"division_code": w.division + "001", "node_id": clinic},
            headers=w.county_admin.headers,
        )
    )
    number, _ = _resident(tree_client, w, clinic)
    people = _people(w, 10, 7, resident_number=number)
    a = _campaign(tree_client, w, people, RETAINED_UNTIL, "留存到期")
    b = _campaign(tree_client, w, _people(w, 40, 3), "2027-12-31", "留存未到期")

    with tree_app.app_context():
        ids = [t.id for t in _tasks(db.session(), a)]
        assert len(ids) == 7

    def act(task_id: int, step: str, body: dict | None = None, headers=None) -> None:
        reply = tree_client.post(
            f"{API}/tasks/{task_id}/{step}", json=body or {}, headers=headers or w.clinician.headers
        )
        _ok(reply)

    notes = ["王10号发热，家属王大明陪同", "电话13812345678无人接听", "已去世，家属告知", "人不在本地"]
    act(ids[0], "complete", {"result": {"temperature": 38.6, "result": "阳性"}, "note": notes[0]})
    act(ids[1], "complete", {"result": {"temperature": 36.5, "result": "阴性"}})
    act(ids[2], "unreachable", {"reason": notes[1], "attempts": 3})
    act(ids[3], "transfer", {"reason": notes[3], "destination": "杭州市西湖区文三路88号"})
    act(ids[4], "refuse", {"reason": "地址不在本院辖区，王14号住隔壁乡"})
    act(ids[5], "close", {"reason": notes[2]}, headers=w.county_admin.headers)
    texts = [p[k] for p in people for k in ("name", "phone", "address", "source")]
    texts += [*notes, "杭州市西湖区文三路88号", "王14号住隔壁乡"]
    return Worked(a, [p["id_number"] for p in people], texts), b


def test_retention_removes_the_persons_and_keeps_the_figures(tree_app, tree_client, pc_world, worked):
    a, b = worked
    with tree_app.app_context():
        session = db.session()
        before = _dump(session, a.campaign_id)
        other_before = _dump(session, b)
        counted, figures = _counted(session, a.campaign_id), _index(session, a.campaign_id)
        persons = session.scalars(sa.select(CampaignPerson).where(CampaignPerson.campaign_id == a.campaign_id)).all()
        assert sum(p.resident_id is not None for p in persons) == 1
        assert all(p.id_cipher and p.name_masked and p.phone_masked and p.address_cipher for p in persons)
        states = {t.state for t in _tasks(session, a.campaign_id)}
        assert states == {"completed", "unreachable", "transferred", "queued", "closed", "assigned"}

        # The last day kept changes nothing.
        assert retention.enforce(LAST_DAY) == {"campaigns": [], "persons": 0}
        assert _dump(session, a.campaign_id) == before

        result = retention.enforce(AFTER_RETENTION)
        assert [(c["campaign_id"], c["persons"], c["finished"]) for c in result["campaigns"]] == [
            (a.campaign_id, 7, True)
        ]
        session.expire_all()
        persons = session.scalars(
            sa.select(CampaignPerson).where(CampaignPerson.campaign_id == a.campaign_id).order_by(CampaignPerson.id)
        ).all()
        for person in persons:
            values = {column: getattr(person, column) for column in PERSON_COLUMNS}
            assert values == {**dict.fromkeys(PERSON_COLUMNS), "id_hash": f"anon:{person.id}"}
            assert person.division_code == pc_world.division + "001" and person.category == "发热"
        tasks = _tasks(session, a.campaign_id)
        assert all(t.result is None for t in tasks)
        assert [t.positive for t in tasks][:2] == [True, False]
        events = session.scalars(
            sa.select(ControlTaskEvent).where(ControlTaskEvent.task_id.in_([t.id for t in tasks]))
        ).all()
        assert all(e.reason is None for e in events)
        assert all("destination" not in e.detail for e in events)
        assert any(e.detail.get("attempts") == 3 for e in events)  # what is not personal stays
        imports = session.scalars(sa.select(RosterImport).where(RosterImport.campaign_id == a.campaign_id)).all()
        assert [(i.rows, i.added, i.rejected, i.rejects) for i in imports] == [(8, 7, 1, [])]

        # Nothing of what the persons were given is left anywhere in the campaign's rows.
        after = _dump(session, a.campaign_id)
        stored = repr(after)
        old = {c: {getattr(row, c) for row in before["persons"]} for c in ("id_hash", "name_masked", "id_masked")}
        old_hashes = old["id_hash"]
        stored_before = repr(before)
        assert all(text in stored_before for text in [*a.texts[3::4], "杭州市西湖区文三路88号", "王14号住隔壁乡"])
        for text in [*a.numbers, *a.texts, *old_hashes, *old["name_masked"], *old["id_masked"]]:
            assert text not in stored, text
        assert not old_hashes & {p.id_hash for p in persons}

        # The figures are the same, counted directly and by the index.
        assert _counted(session, a.campaign_id) == counted
        assert _index(session, a.campaign_id) == figures
        assert sum(counted.values()) == 7

        campaign = session.get(Campaign, a.campaign_id)
        # A campaign still running when its retention passed ends with it: no more steps, reminders, escalations.
        assert campaign.anonymised_at is not None and campaign.state == "ended"
        record = session.scalar(
            sa.select(AuditRecord).where(
                AuditRecord.action == "control.campaign.anonymise", AuditRecord.resource_id == str(a.campaign_id)
            )
        )
        assert (record.actor, record.detail["persons"], record.detail["results"]) == ("system", 7, 2)

        # Campaign B, still within retention, is untouched.
        assert _dump(session, b) == other_before

        # A second run finds nothing to do and changes nothing.
        assert retention.enforce(AFTER_RETENTION) == {"campaigns": [], "persons": 0}
        assert _dump(session, a.campaign_id) == after

    # The task view shows no person any more, and the roster takes nobody new.
    task_id = after["tasks"][0].id
    view = _ok(tree_client.get(f"{API}/tasks/{task_id}", headers=pc_world.clinician.headers))
    assert not any(
        value for key, value in view["person"].items() if key not in ("division_code", "category", "priority")
    )
    refused = tree_client.post(
        f"{API}/campaigns/{a.campaign_id}/roster/items",
        json={"items": _people(pc_world, 60, 1)},
        headers=pc_world.county_admin.headers,
    )
    assert refused.status_code == 409, refused.get_json()


def test_a_run_stopped_half_way_resumes(tree_app, tree_client, pc_world, monkeypatch):
    w = pc_world
    a = _campaign(tree_client, w, _people(w, 70, 5), RETAINED_UNTIL, "中断续跑")
    b = _campaign(tree_client, w, _people(w, 80, 3), RETAINED_UNTIL, "同批到期")

    calls = []

    def stop_after_the_first(campaign_id: int, done: dict) -> None:
        """The job killed after A's first batch (B, due the same night, is not stopped by it)."""
        if campaign_id == a:
            calls.append(done["persons"])
            raise RuntimeError("killed")

    with tree_app.app_context():
        session = db.session()
        monkeypatch.setattr(retention, "_after_batch", stop_after_the_first)
        with pytest.raises(RuntimeError, match=f"retention failed for campaigns \\[{a}\\]"):
            retention.enforce(AFTER_RETENTION, batch=2)
        assert calls == [2]
        session.rollback()
        session.expire_all()
        persons = session.scalars(
            sa.select(CampaignPerson).where(CampaignPerson.campaign_id == a).order_by(CampaignPerson.id)
        ).all()
        # The first batch is committed and whole; the others untouched; the campaign not yet marked.
        assert [p.id_hash.startswith("anon:") for p in persons] == [True, True, False, False, False]
        assert [p.name_cipher is None for p in persons] == [True, True, False, False, False]
        assert session.get(Campaign, a).anonymised_at is None
        assert session.get(Campaign, b).anonymised_at is not None

        monkeypatch.undo()
        result = retention.enforce(AFTER_RETENTION, batch=2)
        assert [(c["persons"], c["batches"], c["finished"]) for c in result["campaigns"]] == [(3, 2, True)]
        session.expire_all()
        persons = session.scalars(sa.select(CampaignPerson).where(CampaignPerson.campaign_id == a)).all()
        assert all(p.id_hash == f"anon:{p.id}" and p.id_cipher is None for p in persons)
        assert session.get(Campaign, a).anonymised_at is not None


def test_the_job_is_registered_daily(tree_app):
    job = tree_app.extensions["workbench.queue"].periodic["mini_apps.precision_control.retention.enforce"]
    assert (job.seconds, job.offset) == (86400, retention.DAILY_OFFSET)
