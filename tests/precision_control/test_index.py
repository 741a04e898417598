"""The county index: figures per node against an independent computation over the task rows, the five colours at
their exact crossings, scope, bad parameters, the daily snapshot (idempotent) and its push once a day to the
owner's chat, and the trend of snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot.models import OutboxMessage
from mini_apps.precision_control import index
from mini_apps.precision_control.models import (
    Campaign,
    CampaignPerson,
    ControlIndexDay,
    ControlNotice,
    ControlTask,
    RosterImport,
)
from org_sync.models import OrgMember, OrgNode
from supervision.models import AlertRoute
from workbench import db
from workbench.auth.principal import INSTITUTION_LEVELS, load_principal
from workbench.db import utcnow

API = "/api/precision-control"
RULE = {"measure": "completion_rate", "thresholds": [60, 70, 80, 90]}
OPEN = ("queued", "assigned", "accepted", "in_progress")
FINISHED = ("completed", "unreachable", "transferred", "closed")


@dataclass
class Places:
    province: int
    county: int
    other_county: int
    institutions: list[int]  # of the county, at least two
    other_institutions: list[int]


def _institutions_under(session, node_id: int) -> list[int]:
    path = session.get(OrgNode, node_id).path
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
    assert len(mine) >= 2 and other, "the sandbox counties have institutions"
    return Places(pc_world.province_id, pc_world.county_id, pc_world.other_county_id, mine, other)


def make_campaign(session, owner: int, rule: dict = RULE, state: str = "active", name: str = "重点人群随访") -> int:
    campaign = Campaign(
        name=name,
        owner_node_id=owner,
        population="测试人群",
        categories=[],
        task_template={"kind": "follow_up", "fields": []},
        deadline_hours={"routine": 72, "urgent": 24},
        index_rule=rule,
        state=state,
        starts_on=date(2026, 11, 1),
        ends_on=date(2026, 12, 31),
        retention_until=date(2027, 6, 30),
        created_by="test",
    )
    session.add(campaign)
    session.flush()
    return campaign.id


def add_tasks(session, campaign_id: int, specs: list[dict]) -> list[int]:
    """Tasks straight into the table (dispatch and the task moves are tested elsewhere), one person each."""
    intake = RosterImport(campaign_id=campaign_id, source="api", rows=len(specs), added=len(specs), created_by="t")
    session.add(intake)
    session.flush()
    ids = []
    for i, spec in enumerate(specs):
        person = CampaignPerson(
            campaign_id=campaign_id,
            import_id=intake.id,
            id_hash=f"{campaign_id}-{intake.id}-{i}",
            id_cipher="x",
            name_masked="张*",
            division_code="330102",
            category="发热",
        )
        session.add(person)
        session.flush()
        task = ControlTask(campaign_id=campaign_id, person_id=person.id, escalation_level=0, **spec)
        session.add(task)
        session.flush()
        ids.append(task.id)
    return ids


NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def mixed_tasks(p: Places) -> list[dict]:
    """Every state, on time and late, open past due and not, positives; several institutions in two counties, the
    county queue, and one task no county answers for."""
    early, late = NOW - timedelta(days=2), NOW + timedelta(days=2)
    out: list[dict] = []
    homes = [(p.county, inst) for inst in p.institutions[:3]] + [(p.other_county, p.other_institutions[0])]
    for n, (county, inst) in enumerate(homes):
        base = {"county_id": county, "institution_id": inst}
        for state in ("assigned", "accepted", "in_progress"):
            out.append({**base, "state": state, "due_at": early})  # overdue
            if n != 1:
                out.append({**base, "state": state, "due_at": late})
        for state in FINISHED:
            # On time: finished a day before due; late: finished a day after.
            out.append({**base, "state": state, "due_at": early, "finished_at": early - timedelta(days=1)})
            if n != 2:
                out.append({**base, "state": state, "due_at": early, "finished_at": early + timedelta(days=1)})
        for k in range(n + 1):
            out.append({**base, "state": "completed", "due_at": late, "finished_at": NOW, "positive": k % 2 == 0})
        out.append({**base, "state": "completed", "due_at": late, "finished_at": NOW, "positive": False})
        out.append({**base, "state": "completed", "due_at": early, "finished_at": early})  # at the due time: on time
    out.append({"county_id": p.county, "state": "queued", "due_at": early})
    out.append({"county_id": p.county, "state": "queued", "due_at": late})
    out.append({"county_id": p.other_county, "state": "queued", "due_at": None})
    out.append({"county_id": p.county, "state": "closed", "due_at": None, "finished_at": NOW})  # closed from the queue
    out.append({"state": "queued", "due_at": early})  # nobody answers for the address: the owner's
    return out


def expected(session, campaign_id: int, node_id: int, owner_id: int) -> dict:
    """The figures recomputed from the task rows, node membership asked of the database one node at a time."""
    node = session.get(OrgNode, node_id)
    under = set(session.scalars(sa.select(OrgNode.id).where(OrgNode.path.startswith(node.path))))
    tasks = session.scalars(sa.select(ControlTask).where(ControlTask.campaign_id == campaign_id)).all()
    mine = []
    for t in tasks:
        if t.institution_id is not None:
            inside = t.institution_id in under
        elif t.county_id is not None:
            inside = t.county_id in under
        else:
            inside = node_id == owner_id
        if inside:
            mine.append(t)

    def n(pred) -> int:
        return sum(1 for t in mine if pred(t))

    def due(t) -> datetime | None:
        return t.due_at

    figures = {
        "tasks": len(mine),
        "open": n(lambda t: t.state in OPEN),
        "finished": n(lambda t: t.state in FINISHED),
        "completed": n(lambda t: t.state == "completed"),
        "unreachable": n(lambda t: t.state == "unreachable"),
        "transferred": n(lambda t: t.state == "transferred"),
        "closed": n(lambda t: t.state == "closed"),
        "on_time": n(lambda t: t.state in FINISHED and (due(t) is None or t.finished_at <= due(t))),
        "overdue": n(lambda t: t.state in OPEN and due(t) is not None and due(t) < NOW),
        "positive": n(lambda t: t.positive is True),
    }

    def pct(a: int, b: int) -> float | None:
        return round(a / b * 100, 2) if b else None

    figures["completion_rate"] = pct(
        figures["completed"], figures["tasks"] - figures["closed"] - figures["transferred"]
    )
    figures["on_time_rate"] = pct(figures["on_time"], figures["finished"])
    figures["overdue_share"] = pct(figures["overdue"], figures["open"])
    return figures


def _get(client, person, path: str, **query):
    return client.get(f"{API}{path}", query_string=query, headers=person.headers)


def _ok(client, person, path: str, **query) -> dict:
    reply = _get(client, person, path, **query)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _figures_of(entry: dict) -> dict:
    return {k: entry[k] for k in (*index.COUNTS, *index.MEASURES)}


def test_figures_equal_an_independent_computation(tree_app, tree_client, pc_world, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        campaign_id = make_campaign(session, p.province)
        add_tasks(session, campaign_id, mixed_tasks(p))
        session.commit()
        at = NOW.isoformat()
        admin = pc_world.province_admin

        top = _ok(tree_client, admin, f"/campaigns/{campaign_id}/index", at=at)
        assert top["node"]["node_id"] == p.province  # default: the owner
        assert top["trail"] == [{"node_id": p.province, "name": top["node"]["name"], "level": "province_commission"}]
        assert _figures_of(top["node"]) == expected(session, campaign_id, p.province, p.province)
        assert top["node"]["tasks"] == len(mixed_tasks(p))
        for child in top["children"]:
            assert _figures_of(child) == expected(session, campaign_id, child["node_id"], p.province)

        county = _ok(tree_client, admin, f"/campaigns/{campaign_id}/index", node_id=p.county, at=at)
        mine = expected(session, campaign_id, p.county, p.province)
        assert _figures_of(county["node"]) == mine
        assert mine["tasks"] > 0 and mine["overdue"] > 0 and mine["positive"] > 0 and mine["on_time"] > 0
        assert county["node"]["value"] == mine["completion_rate"]
        assert county["trail"][0]["node_id"] == p.province
        assert county["trail"][-1]["node_id"] == p.county
        assert county["children"], "a county has its medical communities or institutions beneath it"
        for child in county["children"]:
            assert _figures_of(child) == expected(session, campaign_id, child["node_id"], p.province)
        # The institutions' figures add up to the county's but for the county queue.
        for inst in p.institutions[:3]:
            one = _ok(tree_client, admin, f"/campaigns/{campaign_id}/index", node_id=inst, at=at)["node"]
            assert _figures_of(one) == expected(session, campaign_id, inst, p.province)
            assert one["tasks"] > 0

        # The map: every county under the province, each with its figures and colour.
        grid = _ok(tree_client, admin, f"/campaigns/{campaign_id}/index/map")
        ids = [c["node_id"] for c in grid["counties"]]
        counties = set(
            session.scalars(
                sa.select(OrgNode.id).where(
                    OrgNode.level == "county_bureau",
                    OrgNode.deleted_at.is_(None),
                    OrgNode.path.startswith(session.get(OrgNode, p.province).path),
                )
            )
        )
        assert set(ids) == counties and len(ids) == len(counties)
        by_id = {c["node_id"]: c for c in grid["counties"]}
        assert by_id[p.county]["tasks"] == mine["tasks"]
        assert sum(grid["counts"].values()) == len(counties)
        assert grid["counts"]["none"] == len(counties) - 2  # only the two counties have tasks


def _set_completed(session, task_ids: list[int], state: str = "completed") -> None:
    session.execute(
        sa.update(ControlTask).where(ControlTask.id.in_(task_ids)).values(state=state, finished_at=utcnow())
    )
    session.commit()


def test_a_county_changes_colour_when_its_completion_crosses_a_threshold(tree_app, tree_client, pc_world, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        campaign_id = make_campaign(session, p.county)
        due = utcnow() + timedelta(days=3)
        ids = add_tasks(
            session,
            campaign_id,
            [
                {"county_id": p.county, "institution_id": p.institutions[0], "state": "assigned", "due_at": due}
                for _ in range(10)
            ],
        )
        session.commit()
        admin = pc_world.county_admin

        def county() -> dict:
            return _ok(tree_client, admin, f"/campaigns/{campaign_id}/index/map")["counties"][0]

        # 10 tasks, thresholds 60/70/80/90: red below 6 completed, orange at exactly 60 %, … green from 90 %.
        seen = []
        for done in range(11):
            if done:
                _set_completed(session, [ids[done - 1]])
            c = county()
            assert c["node_id"] == p.county and c["value"] == done * 10
            seen.append(c["colour"])
        assert seen == ["red"] * 6 + ["orange", "yellow", "blue", "green", "green"]

        # Closed and transferred tasks leave the denominator: 5 of 8 is 62.5 % (orange), of 7 it is 71.43 (yellow).
        _set_completed(session, [ids[5], ids[6], ids[7], ids[8], ids[9]], state="assigned")
        session.execute(sa.update(ControlTask).where(ControlTask.id.in_(ids[5:10])).values(finished_at=None))
        session.commit()
        assert (county()["value"], county()["colour"]) == (50, "red")
        _set_completed(session, [ids[9]], state="closed")
        assert (county()["value"], county()["colour"]) == (55.56, "red")
        _set_completed(session, [ids[8]], state="transferred")
        assert (county()["value"], county()["colour"]) == (62.5, "orange")
        _set_completed(session, [ids[7]], state="unreachable")  # unreachable stays in: still 5 of 8
        assert (county()["value"], county()["colour"]) == (62.5, "orange")
        _set_completed(session, [ids[7]], state="closed")
        assert (county()["value"], county()["colour"]) == (71.43, "yellow")


def test_overdue_share_is_lower_is_better_at_its_thresholds(tree_app, pc_world, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        rule = {"measure": "overdue_share", "thresholds": [10, 20, 30, 40]}
        campaign_id = make_campaign(session, p.county, rule=rule)
        past = NOW - timedelta(hours=1)
        ids = add_tasks(
            session,
            campaign_id,
            [
                {
                    "county_id": p.county,
                    "institution_id": p.institutions[0],
                    "state": "assigned",
                    "due_at": NOW + timedelta(days=1),
                }
                for _ in range(10)
            ],
        )
        session.commit()
        campaign = session.get(Campaign, campaign_id)
        owner = session.get(OrgNode, p.county)
        colours = []
        for late in range(6):
            if late:
                session.execute(sa.update(ControlTask).where(ControlTask.id == ids[late - 1]).values(due_at=past))
                session.commit()
            figures = index.compute(session, campaign, owner, NOW).at(owner)
            assert figures.rate("overdue_share") == late * 10
            colours.append(index.colour_of(rule, figures))
        # ≤ 10 green (0 and exactly 10), ≤ 20 blue, ≤ 30 yellow, ≤ 40 orange, above red.
        assert colours == ["green", "green", "blue", "yellow", "orange", "red"]
        # Nothing open: no value, no colour; no tasks at all: no colour.
        assert index.colour_of(rule, index.Figures(tasks=3, finished=3, completed=3)) is None
        assert index.colour_of(RULE, index.Figures()) is None
        on_time = {"measure": "on_time_rate", "thresholds": [50, 60, 70, 80]}
        assert index.colour_of(on_time, index.Figures(tasks=4, finished=2, on_time=1)) == "orange"  # 50 is not < 50


def test_scope_and_bad_parameters(tree_app, tree_client, pc_world, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        province_campaign = make_campaign(session, p.province)
        county_campaign = make_campaign(session, p.county)
        dept = session.scalar(
            sa.select(OrgNode.id).where(
                OrgNode.level == "internal_department",
                OrgNode.path.startswith(session.get(OrgNode, p.county).path),
                OrgNode.deleted_at.is_(None),
            )
        )
        session.commit()
    other, clinician, county_admin = pc_world.other_county_admin, pc_world.clinician, pc_world.county_admin
    url = f"/campaigns/{province_campaign}/index"

    # Another county's administrator: the province campaign at their own county only; the county's campaign: none.
    assert _ok(tree_client, other, url)["node"]["node_id"] == p.other_county
    assert _ok(tree_client, other, url)["trail"][0]["node_id"] == p.other_county
    for path in (url, f"{url}/map", f"{url}/trend"):
        reply = _get(tree_client, other, path, node_id=p.county)
        assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "node_id"
        assert _get(tree_client, other, path, node_id=p.province).status_code == 404
    for path in ("", "/map", "/trend"):
        assert _get(tree_client, other, f"/campaigns/{county_campaign}/index{path}").status_code == 404
        # A clinician reads no index: the same 404 as a campaign that does not exist.
        assert _get(tree_client, clinician, f"/campaigns/{county_campaign}/index{path}").status_code == 404
        assert _get(tree_client, clinician, f"/campaigns/{province_campaign}/index{path}").status_code == 404
        assert _get(tree_client, county_admin, f"/campaigns/999999/index{path}").status_code == 404
    # The county's administrator reads the province campaign at the county, not above it or at the other county.
    assert _ok(tree_client, county_admin, url)["node"]["node_id"] == p.county
    assert _get(tree_client, county_admin, url, node_id=p.other_county).status_code == 404
    assert _ok(tree_client, county_admin, url, node_id=p.institutions[0])["trail"][0]["node_id"] == p.county
    # A county campaign does not reach the province even for the province's administrator asking for it.
    reply = _get(tree_client, pc_world.province_admin, f"/campaigns/{county_campaign}/index", node_id=p.province)
    assert reply.status_code == 404

    for query, field in (
        ({"node_id": "abc"}, "node_id"),
        ({"at": "yesterday"}, "at"),
        ({"node_id": dept}, "node_id"),
    ):
        reply = _get(tree_client, county_admin, url, **query)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == field, (query, reply.get_json())
    for days in (0, 367, "x"):
        reply = _get(tree_client, county_admin, f"{url}/trend", days=days)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "days"
    reply = _get(tree_client, county_admin, f"{url}/map", node_id="1.5")
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "node_id"
    assert tree_client.get(f"{API}{url}").status_code == 401


def _outbox(session, key: str) -> list[OutboxMessage]:
    return list(session.scalars(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == key)))


def test_daily_snapshot_is_idempotent_and_pushed_once_a_day(tree_app, tree_client, pc_world, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        campaign_id = make_campaign(session, p.province, name="发热门诊随访")
        make_campaign(session, p.province, state="draft", name="草稿任务")  # not active: no snapshot
        ids = add_tasks(session, campaign_id, mixed_tasks(p))
        # The owner's chat is the nearest route at or above the owner; a county's own route is not it.
        session.add(AlertRoute(node_id=p.province, conversation_id="cid-province", mention_userids=[], set_by="t"))
        session.add(AlertRoute(node_id=p.county, conversation_id="cid-county", mention_userids=[], set_by="t"))
        session.commit()
        day = index.china_day(NOW)

        first = index.snapshot_and_push(NOW)
        assert first["campaigns"] == 1 and first["pushed"] == 1 and first["rows"] > 3
        rows = {
            r.node_id: r
            for r in session.scalars(
                sa.select(ControlIndexDay).where(ControlIndexDay.campaign_id == campaign_id, ControlIndexDay.day == day)
            )
        }
        assert len(rows) == first["rows"]
        assert session.scalar(sa.select(sa.func.count()).select_from(ControlIndexDay)) == len(rows)
        for node_id in (p.province, p.county, p.other_county, *p.institutions[:3]):
            want = expected(session, campaign_id, node_id, p.province)
            got = rows[node_id]
            assert (got.tasks, got.finished, got.completed, got.on_time, got.overdue, got.positive) == (
                want["tasks"],
                want["finished"],
                want["completed"],
                want["on_time"],
                want["overdue"],
                want["positive"],
            ), node_id
        campaign = session.get(Campaign, campaign_id)
        county_figures = index.compute(session, campaign, session.get(OrgNode, p.province), NOW)
        assert rows[p.county].colour == index.colour_of(RULE, county_figures.at(session.get(OrgNode, p.county)))
        assert rows[p.county].colour is not None

        key = index.message_key(campaign_id, day)
        sent = _outbox(session, key)
        assert len(sent) == 1 and sent[0].channel == "robot_group" and sent[0].target == "cid-province"
        text = sent[0].payload["text"]
        province = session.get(OrgNode, p.province)
        assert "发热门诊随访" in text and province.name in text and day.isoformat() in text
        assert f"任务 {rows[p.province].tasks}，已完成 {rows[p.province].completed}" in text
        assert f"campaign_id={campaign_id}" in text and "/h5/apps/precision_control/dashboard/" in text
        bad = [
            (session.get(OrgNode, n).name, r.colour)
            for n, r in rows.items()
            if session.get(OrgNode, n).level == "county_bureau" and r.colour in ("red", "orange")
        ]
        assert bad, "the mixed tasks leave a county red or orange"
        for name, colour in bad:
            assert f"{index.COLOUR_NAMES[colour]}色：" in text and name in text
        notices = session.scalars(sa.select(ControlNotice).where(ControlNotice.kind == "daily_index")).all()
        assert [(n.campaign_id, n.day, n.conversation_id, n.message_key) for n in notices] == [
            (campaign_id, day, "cid-province", key)
        ]

        # The same day again: the same rows, nothing sent twice.
        before = {n: (r.id, r.tasks, r.completed, r.colour) for n, r in rows.items()}
        session.expire_all()
        again = index.snapshot_and_push(NOW + timedelta(minutes=3))
        assert again["pushed"] == 0 and again["rows"] == first["rows"]
        after = {
            r.node_id: (r.id, r.tasks, r.completed, r.colour)
            for r in session.scalars(sa.select(ControlIndexDay).where(ControlIndexDay.day == day))
        }
        assert after == before
        assert len(_outbox(session, key)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(ControlNotice)) == 1

        # Later the same day, with a task finished since: the day's row follows, still one message.
        open_one = session.scalar(
            sa.select(ControlTask.id).where(ControlTask.id.in_(ids), ControlTask.state == "assigned").limit(1)
        )
        _set_completed(session, [open_one])
        index.snapshot_and_push(NOW + timedelta(hours=1))
        session.expire_all()
        refreshed = session.scalar(
            sa.select(ControlIndexDay).where(ControlIndexDay.node_id == p.province, ControlIndexDay.day == day)
        )
        assert refreshed.completed == before[p.province][2] + 1 and refreshed.id == before[p.province][0]
        assert len(_outbox(session, key)) == 1

        # The next day: its own rows and its own message.
        index.snapshot_and_push(NOW + timedelta(days=1))
        next_key = index.message_key(campaign_id, day + timedelta(days=1))
        assert len(_outbox(session, next_key)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(ControlNotice)) == 2


def test_no_route_no_push_and_trend_returns_the_snapshots(tree_app, tree_client, pc_world, places):
    p = places
    with tree_app.app_context():
        session = db.session()
        campaign_id = make_campaign(session, p.county)
        due = utcnow() + timedelta(days=5)
        ids = add_tasks(
            session,
            campaign_id,
            [
                {"county_id": p.county, "institution_id": p.institutions[0], "state": "assigned", "due_at": due}
                for _ in range(4)
            ],
        )
        session.commit()
        now = utcnow()
        # Three days ago: nothing done; two days ago: one; yesterday: three. No chat anywhere: nothing sent.
        assert index.snapshot_and_push(now - timedelta(days=3))["unrouted"] == 1
        _set_completed(session, ids[:1])
        index.snapshot_and_push(now - timedelta(days=2))
        _set_completed(session, ids[1:3])
        index.snapshot_and_push(now - timedelta(days=1))
        _set_completed(session, ids[3:])
        assert session.scalar(sa.select(sa.func.count()).select_from(ControlNotice)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0

    trend = _ok(tree_client, pc_world.county_admin, f"/campaigns/{campaign_id}/index/trend", node_id=p.county, days=7)
    today = index.china_day(now)
    assert [pt["day"] for pt in trend["points"]] == [(today - timedelta(days=d)).isoformat() for d in (3, 2, 1, 0)]
    assert [pt["completed"] for pt in trend["points"]] == [0, 1, 3, 4]
    assert [pt["live"] for pt in trend["points"]] == [False, False, False, True]
    assert [pt["colour"] for pt in trend["points"]] == ["red", "red", "yellow", "green"]
    assert trend["points"][-1]["value"] == 100
    # A window of two days: yesterday's snapshot and today.
    short = _ok(tree_client, pc_world.county_admin, f"/campaigns/{campaign_id}/index/trend", node_id=p.county, days=2)
    assert [pt["completed"] for pt in short["points"]] == [3, 4]


def test_a_doctor_completing_tasks_turns_the_county_at_each_threshold(tree_app, tree_client, pc_world, places):
    """The same crossing through the doctors' API: each POST /tasks/<id>/complete moves the county's colour."""
    p = places
    with tree_app.app_context():
        session = db.session()
        member = session.scalar(sa.select(OrgMember).where(OrgMember.userid == pc_world.clinician.userid))
        institution = load_principal(session, member.id).institution_ids()[0]
        campaign_id = make_campaign(session, p.county)
        due = utcnow() + timedelta(days=3)
        spec = {"county_id": p.county, "institution_id": institution, "state": "assigned", "due_at": due}
        ids = add_tasks(session, campaign_id, [dict(spec) for _ in range(5)])
        session.commit()

    def county() -> tuple[float | None, str | None]:
        c = _ok(tree_client, pc_world.county_admin, f"/campaigns/{campaign_id}/index", node_id=p.county)["node"]
        return c["value"], c["colour"]

    seen = [county()]
    for task_id in ids:
        reply = tree_client.post(
            f"{API}/tasks/{task_id}/complete", json={"result": {}}, headers=pc_world.clinician.headers
        )
        assert reply.status_code == 200, reply.get_json()
        seen.append(county())
    # 5 tasks against 60/70/80/90: 0, 20, 40 % red; exactly 60 % orange; 80 % blue; 100 % green.
    assert seen == [(0, "red"), (20, "red"), (40, "red"), (60, "orange"), (80, "blue"), (100, "green")]
