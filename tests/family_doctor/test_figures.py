"""Signing figures for supervision on both backends: a small known dataset in the world's county (two sibling
member institutions under their lead hospital), exact figures per institution, roll-ups as sum ÷ sum, renewals,
overdue follow-ups, completeness, scope; and the service-population API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import figures, service
from mini_apps.family_doctor.models import TAGS, Contract, FamilyDoctorTeam, FollowUp, Resident
from org_sync.models import OrgNode
from tests.family_doctor.conftest import World
from workbench import db
from workbench.audit import AuditRecord

API = "/api/family-doctor"
ON = date(2026, 6, 30)
CHINA = service.CHINA


@dataclass
class Dataset:
    county: int
    lead: int  # the lead hospital above both institutions: has a team, reports no population
    a: int  # the world's institution
    b: int  # a sibling member institution


def _nodes(session, world: World) -> Dataset:
    a = session.get(OrgNode, world.institution_id)
    lead = session.get(OrgNode, a.parent_id)
    assert lead.level == "medical_community_lead" and a.level == "member_institution"
    b = session.scalar(
        sa.select(OrgNode.id)
        .where(OrgNode.parent_id == lead.id, OrgNode.level == "member_institution", OrgNode.id != a.id)
        .order_by(OrgNode.id)
    )
    county = session.get(OrgNode, lead.parent_id)
    assert b is not None and county.level == "county_bureau"
    return Dataset(county=county.id, lead=lead.id, a=a.id, b=b)


def _resident(session, n: int, *tags: str) -> Resident:
    resident = Resident(
        name="测试居民",
        id_hash=f"figures-{n}",
        id_cipher="-",
        id_masked="-",
        birth_date=date(1950, 1, 1),
        sex="M",
        tags=service.tags_column(list(tags)),
        created_by="test",
    )
    session.add(resident)
    session.flush()
    return resident


def _contract(session, resident: Resident, team: int, start: date, end: date, status: str = "active", **over):
    contract = Contract(
        resident_id=resident.id,
        team_id=team,
        package="基础包",
        start_date=start,
        end_date=end,
        status=status,
        is_current=over.pop("is_current", True),
        created_by="test",
        **over,
    )
    session.add(contract)
    session.flush()
    return contract


def _follow_up(session, resident: Resident, team: int, kind: str, due: date, done: date | None = None) -> None:
    session.add(FollowUp(resident_id=resident.id, team_id=team, kind=kind, due_date=due, done_on=done))


def _china(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), CHINA)


def build(app, world: World) -> Dataset:
    """Residents, contracts and follow-ups as of ON (2026-06-30); see the expected figures in the tests."""
    with app.app_context():
        session = db.session()
        nodes = _nodes(session, world)
        ta = world.team_id
        tb = FamilyDoctorTeam(institution_id=nodes.b, name="乙团队", created_by="test")
        tc = FamilyDoctorTeam(institution_id=nodes.lead, name="总院团队", created_by="test")
        session.add_all([tb, tc])
        session.flush()
        tb = tb.id
        y25, y26 = date(2025, 1, 1), date(2026, 1, 1)

        # Institution A: signed on ON are r1 r2 r3 r5 r7 r10 r11.
        r1 = _resident(session, 1, "elderly", "hypertension")
        _contract(session, r1, ta, y26, date(2026, 12, 31))
        r2 = _resident(session, 2, "diabetes")
        _contract(session, r2, ta, y26, date(2026, 12, 31))
        r3 = _resident(session, 3)
        _contract(session, r3, ta, y26, date(2026, 12, 31))
        r4 = _resident(session, 4, "elderly")  # ended 2025-12-31, not renewed: due, not renewed
        _contract(session, r4, ta, y25, date(2025, 12, 31))
        r5 = _resident(session, 5, "hypertension")  # renewed at A (previous_id): due and renewed
        old = _contract(session, r5, ta, date(2025, 3, 1), date(2026, 2, 28), "renewed", is_current=False)
        _contract(session, r5, ta, date(2026, 3, 1), date(2027, 2, 28), previous_id=old.id)
        r6 = _resident(session, 6, "elderly")  # terminated before ON: not signed, not due
        _contract(session, r6, ta, y26, date(2026, 12, 31), "terminated", terminated_at=_china(date(2026, 5, 1), 9))
        r7 = _resident(session, 7, "child")  # terminated after ON: signed on ON
        _contract(session, r7, ta, y26, date(2026, 12, 31), "terminated", terminated_at=_china(date(2026, 8, 1), 9))
        r14 = _resident(session, 14, "elderly")  # terminated on ON itself: no longer in force that day
        _contract(session, r14, ta, y26, date(2026, 12, 31), "terminated", terminated_at=_china(ON, 10))

        # Institution B: signed on ON are r8 r9.
        r8 = _resident(session, 8, "elderly")
        _contract(session, r8, tb, y26, date(2026, 12, 31))
        r9 = _resident(session, 9)
        _contract(session, r9, tb, y26, date(2026, 12, 31))
        r10 = _resident(session, 10, "diabetes")  # ended at B, switched to A (no previous_id): B due and renewed
        _contract(session, r10, tb, y25, date(2025, 12, 31), "expired", is_current=False)
        _contract(session, r10, ta, date(2026, 1, 5), date(2027, 1, 4))
        r11 = _resident(session, 11, "elderly")  # overlapping renewal from B to A: counts once, at A
        old = _contract(session, r11, tb, date(2025, 8, 1), date(2026, 7, 31), "renewed", is_current=False)
        _contract(session, r11, ta, date(2026, 6, 1), date(2027, 5, 31), previous_id=old.id)
        r12 = _resident(session, 12)  # terminated, end in the window: not up for renewal
        _contract(session, r12, tb, y25, date(2025, 12, 31), "terminated", terminated_at=_china(date(2025, 6, 1)))
        r13 = _resident(session, 13)  # ended before the window
        _contract(session, r13, tb, date(2024, 1, 1), date(2024, 12, 31), "expired")

        # Follow-ups: open and due before ON are overdue.
        _follow_up(session, r1, ta, "hypertension", date(2026, 4, 1))
        _follow_up(session, r1, ta, "hypertension", date(2026, 1, 1), done=date(2026, 1, 5))
        _follow_up(session, r2, ta, "diabetes", date(2026, 6, 29))
        _follow_up(session, r2, ta, "diabetes", ON)  # due today: not overdue yet
        _follow_up(session, r5, ta, "hypertension", date(2026, 5, 1))
        _follow_up(session, r8, tb, "hypertension", date(2026, 3, 1))
        _follow_up(session, r8, tb, "hypertension", date(2026, 6, 1))
        _follow_up(session, r10, tb, "diabetes", date(2026, 2, 1))
        _follow_up(session, r1, tb, "diabetes", date(2026, 2, 1))  # r1 also overdue at B: once in the county
        session.commit()
        return nodes


def put_population(client, headers, node: int, category: str, population: int, year: int = 2026):
    body = {"node_id": node, "year": year, "category": category, "population": population}
    return client.put(f"{API}/populations", json=body, headers=headers)


def populate(client, world: World, nodes: Dataset) -> None:
    for node, category, population in (
        (nodes.a, "all", 100),
        (nodes.a, "elderly", 20),
        (nodes.a, "key_population", 40),
        (nodes.b, "all", 10),
        (nodes.b, "elderly", 2),
        (nodes.b, "key_population", 5),
    ):
        reply = put_population(client, world.county_admin, node, category, population)
        assert reply.status_code == 200, reply.get_json()


def test_figures_per_institution_and_rolled_up_as_sum_over_sum(tree_app, tree_client, world: World):
    nodes = build(tree_app, world)
    populate(tree_client, world, nodes)
    reply = tree_client.get(f"{API}/figures?on={ON.isoformat()}", headers=world.county_admin)
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["on"] == ON.isoformat() and body["year"] == 2026
    items = {item["node_id"]: item for item in body["items"]}
    # The county (the admin's root), the lead hospital and the two institutions with data; no other institution.
    assert set(items) == {nodes.county, nodes.lead, nodes.a, nodes.b}
    a, b, lead, county = items[nodes.a], items[nodes.b], items[nodes.lead], items[nodes.county]
    assert body["items"][0]["node_id"] == nodes.county and body["items"][1]["node_id"] == nodes.lead  # parents first

    assert a["signed"] == 7 and b["signed"] == 2
    assert a["signed_by_tag"] == dict.fromkeys(TAGS, 0) | {"elderly": 2, "hypertension": 2, "diabetes": 2, "child": 1}
    assert b["signed_by_tag"]["elderly"] == 1 and sum(b["signed_by_tag"].values()) == 1
    assert (a["signed_key_population"], b["signed_key_population"]) == (6, 1)
    assert (a["population"], a["population_by_tag"], a["key_population"]) == (100, {"elderly": 20}, 40)
    assert a["coverage"] == pytest.approx(0.07) and b["coverage"] == pytest.approx(0.2)
    assert a["coverage_by_tag"]["elderly"] == pytest.approx(0.1) and b["coverage_by_tag"]["elderly"] == 0.5
    assert a["coverage_by_tag"]["diabetes"] is None  # no diabetes population reported
    assert a["key_population_coverage"] == pytest.approx(6 / 40)

    for parent in (lead, county):
        # A resident who overlaps two contracts counts once; rates are sum ÷ sum, not the mean of rates.
        assert parent["signed"] == 9 and parent["population"] == 110
        assert parent["coverage"] == pytest.approx(9 / 110)
        assert parent["coverage"] != pytest.approx((a["coverage"] + b["coverage"]) / 2)
        assert parent["coverage_by_tag"]["elderly"] == pytest.approx(3 / 22)
        assert parent["key_population_coverage"] == pytest.approx(7 / 45)
        assert (parent["renewal_due"], parent["renewed"]) == (3, 2)
        assert parent["renewal_rate"] == pytest.approx(2 / 3)
        assert parent["renewal_rate"] != pytest.approx((a["renewal_rate"] + b["renewal_rate"]) / 2)
        # r1 is overdue at both institutions: one resident above them.
        assert (parent["overdue_follow_ups"], parent["residents_with_overdue_follow_up"]) == (7, 5)
        assert parent["completeness"] == [{"node_id": nodes.lead, "name": lead["name"]}]

    assert (a["renewal_due"], a["renewed"], a["renewal_rate"]) == (2, 1, 0.5)
    assert (b["renewal_due"], b["renewed"], b["renewal_rate"]) == (1, 1, 1.0)
    assert (a["overdue_follow_ups"], a["residents_with_overdue_follow_up"]) == (3, 3)
    assert (b["overdue_follow_ups"], b["residents_with_overdue_follow_up"]) == (4, 3)
    assert a["completeness"] == [] and b["completeness"] == []
    assert lead["parent_id"] == nodes.county and a["parent_id"] == nodes.lead


def test_service_function_for_supervision(tree_app, tree_client, world: World):
    nodes = build(tree_app, world)
    with tree_app.app_context():
        session = db.session()
        # No root: the whole tree; the county's figures are the same as its admin's. No population for 2026 yet.
        items = {item.node_id: item for item in figures.signing_figures(session, on=ON)}
        county = items[nodes.county]
        assert county.signed == 9 and county.population is None and county.coverage is None
        assert sorted(county.completeness) == sorted([nodes.lead, nodes.a, nodes.b])
        province = next(item for item in items.values() if item.level == "province_commission")
        assert province.signed == 9 and province.renewal_due == 3
        # Later: on 2026-12-31 r7 has been terminated (r1 r2 r3 r5 r10 r11 remain); a day later only r5 r10 r11.
        later = {i.node_id: i for i in figures.signing_figures(session, on=date(2026, 12, 31), root_ids=[nodes.a])}
        assert set(later) == {nodes.a} and later[nodes.a].signed == 6
        later = {i.node_id: i for i in figures.signing_figures(session, on=date(2027, 1, 1), root_ids=[nodes.a])}
        assert later[nodes.a].signed == 3
        # The cycle ending in [2026-01-01, 2027-01-01] at A: r1 r2 r3 and r5's old contract (renewed); r4 ended
        # before it, r6 r7 r14 were terminated.
        assert (later[nodes.a].renewal_due, later[nodes.a].renewed) == (4, 1)


def test_figures_scope(tree_app, tree_client, world: World):
    nodes = build(tree_app, world)
    client = tree_client
    # Another county's admin: this county's nodes are 404, and their own list holds none of them.
    for node in (nodes.county, nodes.a):
        reply = client.get(f"{API}/figures?node_id={node}&on={ON}", headers=world.other_county_admin)
        assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "node_id"
    reply = client.get(f"{API}/figures?on={ON}", headers=world.other_county_admin)
    assert reply.status_code == 200
    theirs = reply.get_json()["items"]
    assert theirs and not {item["node_id"] for item in theirs} & {nodes.county, nodes.lead, nodes.a, nodes.b}
    root = theirs[0]["path"]
    assert root != "" and all(item["path"].startswith(root) for item in theirs)
    assert theirs[0]["level"] == "county_bureau" and theirs[0]["signed"] == 0
    # The county admin, one institution: only its subtree.
    reply = client.get(f"{API}/figures?node_id={nodes.b}&on={ON}", headers=world.county_admin)
    assert reply.status_code == 200
    assert [(i["node_id"], i["signed"]) for i in reply.get_json()["items"]] == [(nodes.b, 2)]
    # A doctor holds none of the reader roles.
    assert client.get(f"{API}/figures", headers=world.doctor).status_code == 403


def test_population_api_validates_and_audits(tree_app, tree_client, world: World):
    nodes = build(tree_app, world)
    client, admin = tree_client, world.county_admin
    for body, field in (
        ({"node_id": nodes.a, "year": 2026, "category": "bogus", "population": 1}, "category"),
        ({"node_id": nodes.a, "year": 2026, "category": "all", "population": -1}, "population"),
        ({"node_id": nodes.a, "category": "all", "population": 1}, "year"),
        ({"node_id": nodes.a, "year": 2026, "category": "all"}, "population"),
        ({"year": 2026, "category": "all", "population": 1}, "node_id"),
    ):
        reply = client.put(f"{API}/populations", json=body, headers=admin)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == field, (body, reply.get_json())
    # Not an institution: parents' populations are the sums of their institutions'.
    reply = put_population(client, admin, nodes.county, "all", 1000)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "node_id"
    # Outside the scope: 404; a doctor is no admin: 403.
    reply = put_population(client, world.other_county_admin, nodes.a, "all", 5)
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "node_id"
    assert put_population(client, world.doctor, nodes.a, "all", 5).status_code == 403

    assert put_population(client, admin, nodes.a, "all", 90).status_code == 200
    reply = put_population(client, admin, nodes.a, "all", 100)
    assert reply.status_code == 200
    assert reply.get_json() | {"updated_at": None} == {
        "node_id": nodes.a,
        "node_name": reply.get_json()["node_name"],
        "year": 2026,
        "category": "all",
        "category_name": "辖区常住人口",
        "population": 100,
        "updated_at": None,
        "updated_by": reply.get_json()["updated_by"],
    }
    assert put_population(client, admin, nodes.b, "elderly", 3).status_code == 200
    with tree_app.app_context():
        records = (
            db.session()
            .scalars(
                sa.select(AuditRecord)
                .where(AuditRecord.action == "family_doctor.population.update")
                .order_by(AuditRecord.id)
            )
            .all()
        )
        assert [(r.node_id, r.detail["population"], r.detail["previous"]) for r in records] == [
            (nodes.a, 90, None),
            (nodes.a, 100, 90),
            (nodes.b, 3, None),
        ]

    reply = client.get(f"{API}/populations?year=2026", headers=admin)
    assert reply.status_code == 200
    assert [(i["node_id"], i["category"], i["population"]) for i in reply.get_json()["items"]] == [
        (nodes.a, "all", 100),
        (nodes.b, "elderly", 3),
    ]
    reply = client.get(f"{API}/populations?year=2026&node_id={nodes.b}", headers=admin)
    assert [i["node_id"] for i in reply.get_json()["items"]] == [nodes.b]
    assert client.get(f"{API}/populations?year=2025", headers=admin).get_json()["items"] == []
    reply = client.get(f"{API}/populations?year=2026", headers=world.other_county_admin)
    assert reply.status_code == 200 and reply.get_json()["items"] == []
    reply = client.get(f"{API}/populations?node_id={nodes.a}", headers=world.other_county_admin)
    assert reply.status_code == 404
