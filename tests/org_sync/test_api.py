"""`/api/org`: credentials, node/children/search/member reads, level overrides, the streamed export."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from config.settings import DEV_ADMIN_TOKEN
from org_sync import apply
from org_sync.full_sync import run_full_sync
from org_sync.models import OrgNode
from tests.org_sync.test_apply import CORP, DictSource, seed_from_truth
from workbench import db

AUTH = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
MASKED = re.compile(r"^\d{3}\*{4}\d{4}$")


@pytest.fixture
def tree(app, sandbox) -> dict:
    """The session sandbox's tree applied to the app; returns the truth it was built from."""
    truth = sandbox.admin("GET", "truth").json()
    seed_from_truth(app, DictSource(truth["departments"], truth["users"]))
    return truth


def node_id(app, dept_id: int) -> int:
    with app.app_context():
        return db.session().scalar(sa.select(OrgNode.id).where(OrgNode.dept_id == dept_id))


def get(client, url: str):
    return client.get(url, headers=AUTH)


def test_every_route_needs_a_credential(client):
    for method, url in (
        ("GET", "/api/org/nodes/1"),
        ("GET", "/api/org/nodes/1/children"),
        ("GET", "/api/org/nodes?q=医院"),
        ("PATCH", "/api/org/nodes/1"),
        ("GET", "/api/org/members/u1"),
        ("GET", "/api/org/export"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": DEV_ADMIN_TOKEN}):
            reply = client.open(url, method=method, headers=headers, json={"level_override": None})
            assert reply.status_code == 401, (method, url, headers)
            assert reply.get_json()["error"]["code"] in {"unauthorized", "invalid_token"}


def test_unknown_things_are_404_naming_them(client):
    for url in ("/api/org/nodes/999999", "/api/org/nodes/999999/children", "/api/org/export?root=999999"):
        reply = get(client, url)
        assert reply.status_code == 404, url
        assert reply.get_json()["error"]["code"] == "not_found"
    reply = client.patch("/api/org/nodes/999999", headers=AUTH, json={"level_override": "county_bureau"})
    assert reply.status_code == 404
    reply = get(client, "/api/org/members/nobody")
    assert (reply.status_code, reply.get_json()["error"]["field"]) == (404, "userid")


def test_node_with_ancestors_counts_and_children(app, client, tree):
    depts = {d["dept_id"]: d for d in tree["departments"]}
    # A member institution: four ancestors up to the province commission.
    inst = next(d for d in tree["departments"] if d["_level"] == "member_institution")
    body = get(client, f"/api/org/nodes/{node_id(app, inst['dept_id'])}").get_json()
    chain, parent = [], inst.get("parent_id")
    while parent is not None:
        chain.insert(0, parent)
        parent = depts[parent].get("parent_id")
    assert [a["dept_id"] for a in body["ancestors"]] == chain
    assert body["ancestors"][0]["level"] == "province_commission"
    kids = [d for d in tree["departments"] if d.get("parent_id") == inst["dept_id"]]
    assert body["children_count"] == len(kids)
    assert body["members_count"] == sum(inst["dept_id"] in u["dept_id_list"] for u in tree["users"])
    assert (body["name"], body["level"], body["layer"]) == (inst["name"], "member_institution", "service")

    first = get(client, f"/api/org/nodes/{body['id']}/children?page_size=2").get_json()
    assert first["total"] == len(kids) and len(first["items"]) == min(2, len(kids))
    everything = get(client, f"/api/org/nodes/{body['id']}/children?page_size=200").get_json()["items"]
    assert sorted(c["dept_id"] for c in everything) == sorted(d["dept_id"] for d in kids)
    # DingTalk's order.
    assert [c["sort_order"] for c in everything] == sorted(c["sort_order"] for c in everything)
    assert get(client, f"/api/org/nodes/{body['id']}/children?page_size=0").status_code == 422


def test_search_by_name(app, client, tree):
    expected = sorted(d["dept_id"] for d in tree["departments"] if "卫生院" in d["name"])
    reply = get(client, "/api/org/nodes?q=卫生院&limit=5").get_json()
    assert reply["total"] == len(expected) and len(reply["items"]) == min(5, len(expected))
    found = []
    for page in range(1, len(expected) // 50 + 2):
        found += [n["dept_id"] for n in get(client, f"/api/org/nodes?q=卫生院&page={page}").get_json()["items"]]
    assert sorted(found) == expected
    assert get(client, "/api/org/nodes?q=%25").get_json()["total"] == 0  # LIKE wildcards are literal
    reply = get(client, "/api/org/nodes")
    assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, "q")
    # Under a root only.
    county = next(d for d in tree["departments"] if d["_level"] == "county_bureau")
    under = get(client, f"/api/org/nodes?q=卫生院&root={node_id(app, county['dept_id'])}&limit=200").get_json()
    assert 0 < under["total"] < len(expected)


def test_member_with_positions_and_masked_mobile(app, client, tree):
    user = max(tree["users"], key=lambda u: (len(u["dept_id_list"]), any(x["leader"] for x in u["leader_in_dept"])))
    body = get(client, f"/api/org/members/{user['userid']}").get_json()
    assert body["name"] == user["name"] and body["title"] == (user["title"] or None)
    assert body["mobile"] != user["mobile"] and MASKED.match(body["mobile"])
    assert body["mobile"][:3] == user["mobile"][:3] and body["mobile"][-4:] == user["mobile"][-4:]
    levels = {d["dept_id"]: d["_level"] for d in tree["departments"]}
    leaders = {x["dept_id"] for x in user["leader_in_dept"] if x["leader"]}
    positions = {p["dept_id"]: p for p in body["positions"]}
    assert set(positions) == set(user["dept_id_list"]) and len(positions) > 1
    for dept_id, p in positions.items():
        assert p["is_leader"] == (dept_id in leaders)
        assert p["level"] == levels[dept_id] and p["layer"] in ("administrative", "operational", "service")
    assert json.dumps(body, ensure_ascii=False).count(user["mobile"]) == 0


def test_level_override_is_validated_applied_and_survives_syncs(app, client, tree):
    inst = next(d for d in tree["departments"] if d["_level"] == "member_institution")
    nid = node_id(app, inst["dept_id"])
    url = f"/api/org/nodes/{nid}"
    for bad in ({"level_override": "king"}, {"level_override": 3}, {}):
        reply = client.patch(url, headers=AUTH, json=bad)
        assert reply.status_code == 422, bad
        assert reply.get_json()["error"]["field"] == "level_override"

    reply = client.patch(url, headers=AUTH, json={"level_override": "medical_community_lead"})
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert (body["level"], body["layer"], body["level_source"]) == ("medical_community_lead", "operational", "override")
    # The same department applied again (a sync, an org_dept_modify) keeps the correction.
    with app.app_context():
        apply.upsert_department(CORP, inst, event_id="resync", source=DictSource(tree["departments"], []))
        db.session().commit()
    body = get(client, url).get_json()
    assert (body["level"], body["level_override"]) == ("medical_community_lead", "medical_community_lead")
    # Cleared: back to the automatic classification.
    body = client.patch(url, headers=AUTH, json={"level_override": None}).get_json()
    assert (body["level"], body["level_override"]) == ("member_institution", None)
    assert body["level_source"] in ("code", "name")


def test_export_equals_the_truth_and_is_streamed(app, client, tree):
    reply = get(client, "/api/org/export")
    assert reply.status_code == 200 and reply.is_streamed
    body = json.loads(reply.get_data(as_text=True))
    assert {d["dept_id"]: (d["parent_id"], d["name"]) for d in body["departments"]} == {
        d["dept_id"]: (d.get("parent_id"), d["name"]) for d in tree["departments"]
    }
    assert {u["userid"]: (u["name"], u["dept_id_list"], u["active"]) for u in body["users"]} == {
        u["userid"]: (u["name"], sorted(u["dept_id_list"]), u["active"]) for u in tree["users"]
    }
    assert all(u["mobile"] is None or MASKED.match(u["mobile"]) for u in body["users"])
    text = reply.get_data(as_text=True)
    assert not any(u["mobile"] in text for u in tree["users"] if u["mobile"])

    # A county's subtree: its departments, and its people with the departments they have inside it.
    county = next(d for d in tree["departments"] if d["_level"] == "county_bureau")
    children: dict[int, list[int]] = {}
    for d in tree["departments"]:
        children.setdefault(d.get("parent_id"), []).append(d["dept_id"])
    inside, stack = set(), [county["dept_id"]]
    while stack:
        inside.add(stack[-1])
        stack.extend(children.get(stack.pop(), []))
    sub = json.loads(get(client, f"/api/org/export?root={node_id(app, county['dept_id'])}").get_data(as_text=True))
    assert {d["dept_id"] for d in sub["departments"]} == inside
    expected = {
        u["userid"]: sorted(set(u["dept_id_list"]) & inside) for u in tree["users"] if set(u["dept_id_list"]) & inside
    }
    assert {u["userid"]: u["dept_id_list"] for u in sub["users"]} == expected


def test_routes_are_in_the_openapi_spec(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert {
        "/api/org/nodes/{node_id}",
        "/api/org/nodes/{node_id}/children",
        "/api/org/nodes",
        "/api/org/members/{userid}",
        "/api/org/export",
    } <= set(paths)
    assert "patch" in paths["/api/org/nodes/{node_id}"]


def test_an_override_survives_a_full_sync(app, client, tree):
    """Corrections are the admin's: a full sync of the whole tree keeps them (and their effect below)."""
    county = next(d for d in tree["departments"] if d["_level"] == "county_bureau")
    url = f"/api/org/nodes/{node_id(app, county['dept_id'])}"
    assert client.patch(url, headers=AUTH, json={"level_override": "city_commission"}).status_code == 200
    with app.app_context():
        assert run_full_sync().state == "succeeded"
    body = get(client, url).get_json()
    assert (body["level"], body["level_source"], body["level_override"]) == (
        "city_commission",
        "override",
        "city_commission",
    )
