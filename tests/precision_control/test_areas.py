"""Service areas and a campaign's dispatch rules over HTTP: who may map what, bulk all-or-none, scope, audit."""

from __future__ import annotations

import sqlalchemy as sa

from mini_apps.family_doctor.models import FamilyDoctorTeam
from mini_apps.precision_control.models import DispatchRule, ServiceArea
from tests.precision_control.test_dispatch import API, make_campaign, places  # noqa: F401  (fixture)
from workbench import db
from workbench.audit import AuditRecord

AREAS = f"{API}/service-areas"


def _field(reply) -> tuple[int, str | None]:
    return reply.status_code, (reply.get_json() or {}).get("error", {}).get("field")


def test_set_list_delete_areas(tree_app, tree_client, pc_world, places):  # noqa: F811
    p, w = places, pc_world
    admin, other = w.county_admin.headers, w.other_county_admin.headers
    county_area = tree_client.put(AREAS, json={"division_code": p.div, "node_id": p.county}, headers=admin)
    assert county_area.status_code == 200, county_area.get_json()
    assert (county_area.get_json()["division_code"], county_area.get_json()["node_id"]) == (p.div, p.county)
    township = tree_client.put(AREAS, json={"division_code": p.div + "001", "node_id": p.inst_a}, headers=admin)
    assert township.status_code == 200, township.get_json()
    moved = tree_client.put(AREAS, json={"division_code": p.div + "001", "node_id": p.inst_b}, headers=admin)
    assert (moved.status_code, moved.get_json()["node_id"]) == (200, p.inst_b)

    listed = tree_client.get(AREAS, query_string={"prefix": p.div}, headers=admin).get_json()
    assert [(i["division_code"], i["node_id"]) for i in listed["items"]] == [
        (p.div, p.county),
        (p.div + "001", p.inst_b),
    ]
    assert tree_client.get(AREAS, headers=other).get_json()["total"] == 0

    for body, headers, expected in [
        ({"division_code": "12345", "node_id": p.inst_a}, admin, (422, "division_code")),
        ({"division_code": p.div + "0012", "node_id": p.inst_a}, admin, (422, "division_code")),
        ({"division_code": p.div, "node_id": "x"}, admin, (422, "node_id")),
        ({"division_code": p.div + "002"}, admin, (422, "node_id")),
        ({"division_code": p.div + "002", "node_id": p.county}, admin, (422, "node_id")),  # a bureau: no villages
        ({"division_code": p.div + "002", "node_id": p.other_inst}, admin, (422, "node_id")),  # not in scope
        ({"division_code": p.div + "002", "node_id": p.inst_a, "team_id": 999999}, admin, (422, "team_id")),
        ({"division_code": p.div, "node_id": p.other_county}, other, (409, "division_code")),  # not theirs
        # Another county's institution cannot claim villages of a county already mapped.
        ({"division_code": p.div + "003", "node_id": p.other_inst}, other, (422, "node_id")),
    ]:
        assert _field(tree_client.put(AREAS, json=body, headers=headers)) == expected, body
    assert (
        tree_client.put(
            AREAS, json={"division_code": p.div, "node_id": p.inst_a}, headers=w.clinician.headers
        ).status_code
        == 403
    )

    assert tree_client.delete(f"{AREAS}/{p.div}001", headers=other).status_code == 404
    assert tree_client.delete(f"{AREAS}/{p.div}001", headers=admin).status_code == 204
    assert tree_client.delete(f"{AREAS}/{p.div}001", headers=admin).status_code == 404
    with tree_app.app_context():
        session = db.session()
        assert session.scalars(sa.select(ServiceArea.division_code)).all() == [p.div]
        actions = session.scalars(
            sa.select(AuditRecord.action).where(AuditRecord.action.like("precision_control.areas.%"))
        ).all()
        assert sorted(actions) == ["precision_control.areas.delete"] + ["precision_control.areas.set"] * 3


def test_bulk_all_or_none(tree_app, tree_client, pc_world, places):  # noqa: F811
    p, w = places, pc_world
    with tree_app.app_context():
        session = db.session()
        team = FamilyDoctorTeam(institution_id=p.inst_a, name="一团队", created_by="test")
        session.add(team)
        session.commit()
        team_id = team.id
    good = [
        {"division_code": p.div + "001002", "node_id": p.inst_a, "team_id": team_id},
        {"division_code": p.div, "node_id": p.county},
        {"division_code": p.div + "001", "node_id": p.inst_b},
    ]
    bad = tree_client.put(
        f"{AREAS}/bulk",
        json={"items": [*good, {"division_code": p.div + "004", "node_id": p.other_inst}]},
        headers=w.county_admin.headers,
    )
    assert _field(bad) == (422, "items.3.node_id")
    dup = tree_client.put(f"{AREAS}/bulk", json={"items": [good[1], good[1]]}, headers=w.county_admin.headers)
    assert _field(dup) == (422, "items.1.division_code")
    assert _field(tree_client.put(f"{AREAS}/bulk", json={"items": []}, headers=w.county_admin.headers))[0] == 422
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(ServiceArea)) == 0

    done = tree_client.put(f"{AREAS}/bulk", json={"items": good}, headers=w.county_admin.headers)
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["created"], done.get_json()["updated"]) == (3, 0)
    again = tree_client.put(f"{AREAS}/bulk", json={"items": good}, headers=w.county_admin.headers)
    assert (again.get_json()["created"], again.get_json()["updated"]) == (0, 3)
    with tree_app.app_context():
        stored = {a.division_code: (a.node_id, a.team_id) for a in db.session().scalars(sa.select(ServiceArea))}
    assert stored == {p.div + "001002": (p.inst_a, team_id), p.div: (p.county, None), p.div + "001": (p.inst_b, None)}


def test_dispatch_rules(tree_app, tree_client, pc_world, places):  # noqa: F811
    p, w = places, pc_world
    with tree_app.app_context():
        session = db.session()
        campaign = make_campaign(session, p.county)
        team = FamilyDoctorTeam(institution_id=p.inst_b, name="二团队", created_by="test")
        session.add(team)
        session.commit()
        campaign_id, team_id = campaign.id, team.id
    rules = f"{API}/campaigns/{campaign_id}/dispatch-rules"
    admin = w.county_admin.headers
    first = tree_client.put(rules, json={"division_prefix": p.div + "001", "node_id": p.inst_a}, headers=admin)
    assert first.status_code == 200, first.get_json()
    replaced = tree_client.put(
        rules, json={"division_prefix": p.div + "001", "node_id": p.inst_b, "team_id": team_id}, headers=admin
    )
    assert (replaced.status_code, replaced.get_json()["team_id"]) == (200, team_id)
    county_rule = tree_client.put(rules, json={"division_prefix": p.div[:4], "node_id": p.county}, headers=admin)
    assert county_rule.status_code == 200, county_rule.get_json()  # a rule may queue in the county
    listed = tree_client.get(rules, headers=admin).get_json()["items"]
    assert [(r["division_prefix"], r["node_id"]) for r in listed] == [(p.div[:4], p.county), (p.div + "001", p.inst_b)]

    for body, expected in [
        ({"division_prefix": "12345", "node_id": p.inst_a}, (422, "division_prefix")),
        ({"division_prefix": "3", "node_id": p.inst_a}, (422, "division_prefix")),
        ({"node_id": p.inst_a}, (422, "division_prefix")),
        ({"division_prefix": p.div, "node_id": p.other_inst}, (422, "node_id")),
        ({"division_prefix": p.div, "node_id": p.inst_a, "team_id": team_id}, (422, "team_id")),  # not inst_a's
        ({"division_prefix": p.div, "node_id": p.inst_a, "member_id": 999999}, (422, "member_id")),
        ({"division_prefix": p.div, "node_id": p.county, "team_id": team_id}, (422, "node_id")),
    ]:
        assert _field(tree_client.put(rules, json=body, headers=admin)) == expected, body
    outsider = tree_client.put(
        rules, json={"division_prefix": p.div, "node_id": p.other_inst}, headers=w.other_county_admin.headers
    )
    assert outsider.status_code == 404
    assert tree_client.get(rules, headers=w.other_county_admin.headers).status_code == 404
    assert (
        tree_client.put(
            f"{API}/campaigns/999999/dispatch-rules",
            json={"division_prefix": p.div, "node_id": p.inst_a},
            headers=admin,
        ).status_code
        == 404
    )

    assert tree_client.delete(f"{rules}/{p.div[:4]}", headers=admin).status_code == 204
    assert tree_client.delete(f"{rules}/{p.div[:4]}", headers=admin).status_code == 404
    with tree_app.app_context():
        stored = db.session().scalars(sa.select(DispatchRule).where(DispatchRule.campaign_id == campaign_id)).all()
        assert [(r.division_prefix, r.node_id, r.team_id) for r in stored] == [(p.div + "001", p.inst_b, team_id)]
