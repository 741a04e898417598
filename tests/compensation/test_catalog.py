"""The service-item list (服务项目清单): written by the province's administrators only, read by administrators,
finance officers and institution administrators; codes, packages, units and quality rules validated field by
field; deactivation; the package frozen once a published table prices the item; audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mini_apps.compensation.models import ServiceItem
from workbench import db
from workbench.audit import AuditRecord

API = "/api/compensation/items"


def _item(**overrides) -> dict:
    body = {
        "code": "PH-HTN_01",
        "name": "高血压患者规范随访",
        "package": "public_health",
        "unit": "人次",
        "quality_rule": {"required_fields": ["sbp", "dbp", "next_visit"]},
    }
    body.update(overrides)
    return body


def _create(client, world, **overrides) -> dict:
    reply = client.post(API, json=_item(**overrides), headers=world.province_admin.headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def test_province_admin_creates_reads_edits_deactivates(tree_app, tree_client, pc_world):
    w, c = pc_world, tree_client
    created = _create(c, w)
    assert created["code"] == "PH-HTN_01" and created["active"] is True
    assert created["package_label"] == "基本公共卫生服务包"
    assert created["quality_rule"] == {"required_fields": ["sbp", "dbp", "next_visit"]}
    _create(c, w, code="BM01", name="门诊诊疗", package="basic_medical", quality_rule={})
    _create(c, w, code="FD01", name="家庭医生签约", package="contract", unit="人年", quality_rule={})

    for headers in (w.county_admin.headers, w.province_admin.headers):
        one = c.get(f"{API}/PH-HTN_01", headers=headers)
        assert one.status_code == 200 and one.get_json()["name"] == "高血压患者规范随访"
    assert c.get(f"{API}/NOPE", headers=w.county_admin.headers).status_code == 404

    edited = c.patch(
        f"{API}/PH-HTN_01",
        json={"name": "高血压随访", "quality_rule": {}, "note": "按季度"},
        headers=w.province_admin.headers,
    ).get_json()
    assert (edited["name"], edited["quality_rule"], edited["note"]) == ("高血压随访", {}, "按季度")
    assert c.post(f"{API}/BM01/deactivate", headers=w.province_admin.headers).get_json()["active"] is False

    def codes(**query) -> list[str]:
        reply = c.get(API, query_string=query, headers=w.county_admin.headers)
        assert reply.status_code == 200, reply.get_json()
        return [item["code"] for item in reply.get_json()["items"]]

    assert codes() == ["BM01", "FD01", "PH-HTN_01"]
    assert codes(active="true") == ["FD01", "PH-HTN_01"]
    assert codes(active="false") == ["BM01"]
    assert codes(package="contract") == ["FD01"]
    assert codes(q="htn") == ["PH-HTN_01"]
    assert codes(q="签约") == ["FD01"]
    assert codes(q="%") == []

    reactivated = c.patch(f"{API}/BM01", json={"active": True}, headers=w.province_admin.headers)
    assert reactivated.get_json()["active"] is True

    with tree_app.app_context():
        actions = (
            db.session().scalars(sa.select(AuditRecord.action).where(AuditRecord.resource_type == "comp_item")).all()
        )
    assert sorted(actions) == ["comp.item.create"] * 3 + ["comp.item.update"] * 3


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"code": "ph01"}, "code"),
        ({"code": "P"}, "code"),
        ({"code": "1ABC"}, "code"),
        ({"code": "A" * 33}, "code"),
        ({"code": "AB C"}, "code"),
        ({"package": "dental"}, "package"),
        ({"unit": ""}, "unit"),
        ({"unit": "人" * 21}, "unit"),
        ({"name": "  "}, "name"),
        ({"quality_rule": {"required": ["sbp"]}}, "quality_rule"),
        ({"quality_rule": {"required_fields": []}}, "quality_rule.required_fields"),
        ({"quality_rule": {"required_fields": ["sbp", "SBP"]}}, "quality_rule.required_fields.1"),
        ({"quality_rule": {"required_fields": ["sbp", "sbp"]}}, "quality_rule.required_fields.1"),
        ({"quality_rule": {"required_fields": [f"f{i}" for i in range(31)]}}, "quality_rule.required_fields"),
    ],
)
def test_item_validation(tree_app, tree_client, pc_world, overrides, field):
    reply = tree_client.post(API, json=_item(**overrides), headers=pc_world.province_admin.headers)
    assert reply.status_code == 422, reply.get_json()
    assert reply.get_json()["error"]["field"] == field
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(ServiceItem)) == 0


def test_thirty_fields_and_duplicate_code(tree_client, pc_world):
    _create(tree_client, pc_world, quality_rule={"required_fields": [f"f{i}" for i in range(30)]})
    again = tree_client.post(API, json=_item(), headers=pc_world.province_admin.headers)
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "code"


def test_who_may_write_and_read(tree_client, pc_world):
    w, c = pc_world, tree_client
    for headers in (w.county_admin.headers, w.other_county_admin.headers, w.clinician.headers):
        assert c.post(API, json=_item(), headers=headers).status_code == 403
    _create(c, w)
    assert c.patch(f"{API}/PH-HTN_01", json={"name": "x"}, headers=w.county_admin.headers).status_code == 403
    assert c.post(f"{API}/PH-HTN_01/deactivate", headers=w.county_admin.headers).status_code == 403
    assert c.get(API, headers=w.clinician.headers).status_code == 403
    assert c.get(API).status_code == 401


def test_package_frozen_once_published(tree_client, pc_world):
    w, c = pc_world, tree_client
    _create(c, w, quality_rule={})
    moved = c.patch(f"{API}/PH-HTN_01", json={"package": "basic_medical"}, headers=w.province_admin.headers)
    assert moved.status_code == 200 and moved.get_json()["package"] == "basic_medical"
    table = c.post(
        "/api/compensation/tables",
        json={
            "region_node_id": w.province_id,
            "version": "2026",
            "name": "2026年当量表",
            "valid_from": "2026-01-01",
            "adjust_min_pct": -10,
            "adjust_max_pct": 10,
        },
        headers=w.province_admin.headers,
    ).get_json()
    values = {"values": [{"item_code": "PH-HTN_01", "value": "1.7"}]}
    assert (
        c.put(
            f"/api/compensation/tables/{table['id']}/values", json=values, headers=w.province_admin.headers
        ).status_code
        == 200
    )
    assert (
        c.post(f"/api/compensation/tables/{table['id']}/publish", headers=w.province_admin.headers).status_code == 200
    )
    frozen = c.patch(f"{API}/PH-HTN_01", json={"package": "public_health"}, headers=w.province_admin.headers)
    assert frozen.status_code == 409 and frozen.get_json()["error"]["field"] == "package"
    # The rest stays editable.
    renamed = c.patch(f"{API}/PH-HTN_01", json={"name": "高血压随访"}, headers=w.province_admin.headers)
    assert renamed.status_code == 200
