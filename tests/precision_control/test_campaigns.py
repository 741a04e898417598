"""Campaigns: created by a commission or bureau for its subtree, validated field by field, read within scope,
moved draft → active → ended, audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.precision_control.conftest import campaign_body
from workbench import db
from workbench.audit import AuditRecord

URL = "/api/precision-control/campaigns"


def _create(client, world, headers=None, owner: int | None = None, **overrides) -> dict:
    body = campaign_body(owner or world.county_id, **overrides)
    reply = client.post(URL, json=body, headers=headers or world.county_admin.headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def test_county_admin_creates_a_draft_campaign_and_reads_it(tree_app, tree_client, pc_world):
    campaign = _create(tree_client, pc_world)
    assert campaign["state"] == "draft"
    assert campaign["owner_node_id"] == pc_world.county_id
    assert campaign["persons"] == 0
    assert campaign["task_template"]["fields"][1]["positive"] == "阳性"
    assert campaign["deadline_hours"] == {"routine": 72, "urgent": 24}

    listed = tree_client.get(URL, headers=pc_world.county_admin.headers).get_json()
    assert [c["id"] for c in listed["items"]] == [campaign["id"]]
    one = tree_client.get(f"{URL}/{campaign['id']}", headers=pc_world.county_admin.headers)
    assert one.status_code == 200
    assert one.get_json()["name"] == "重点人群随访"

    with tree_app.app_context():
        actions = (
            db.session()
            .scalars(sa.select(AuditRecord.action).where(AuditRecord.resource_id == str(campaign["id"])))
            .all()
        )
    assert "control.campaign.create" in actions
    assert "control.campaign.read" in actions


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"task_template": {"kind": "dance", "fields": []}}, "task_template.kind"),
        (
            {"task_template": {"kind": "test", "fields": [{"code": "r", "label": "结果", "type": "choice"}]}},
            "task_template.fields.0.choices",
        ),
        (
            {"task_template": {"kind": "test", "fields": [{"code": "Bad Code", "label": "结果", "type": "text"}]}},
            "task_template.fields.0.code",
        ),
        (
            {
                "task_template": {
                    "kind": "test",
                    "fields": [{"code": "t", "label": "体温", "type": "number", "min": 43, "max": 34}],
                }
            },
            "task_template.fields.0.max",
        ),
        (
            {
                "task_template": {
                    "kind": "test",
                    "fields": [
                        {
                            "code": "r",
                            "label": "结果",
                            "type": "choice",
                            "choices": ["阴性", "阳性"],
                            "positive": "可疑",
                        }
                    ],
                }
            },
            "task_template.fields.0.positive",
        ),
        ({"deadline_hours": {"routine": 72, "urgent": 0}}, "deadline_hours.urgent"),
        ({"deadline_hours": {"routine": 72}}, "deadline_hours"),
        ({"escalation_hours": [0, 48, 24]}, "escalation_hours.2"),
        ({"index_rule": {"measure": "speed", "thresholds": [60, 70, 80, 90]}}, "index_rule.measure"),
        ({"index_rule": {"measure": "completion_rate", "thresholds": [60, 50, 80, 90]}}, "index_rule.thresholds.1"),
        ({"index_rule": {"measure": "completion_rate", "thresholds": [60, 70, 80, 120]}}, "index_rule.thresholds.3"),
        ({"index_rule": {"measure": "completion_rate", "thresholds": [60, 70, 80]}}, "index_rule.thresholds"),
        ({"ends_on": "2026-10-01"}, "ends_on"),
        ({"retention_until": "2026-12-01"}, "retention_until"),
        ({"categories": ["发热", "发热"]}, "categories"),
        ({"name": "  "}, "name"),
    ],
)
def test_a_bad_campaign_is_refused_naming_the_field(tree_client, pc_world, overrides, field):
    reply = tree_client.post(
        URL, json=campaign_body(pc_world.county_id, **overrides), headers=pc_world.county_admin.headers
    )
    assert reply.status_code == 422, reply.get_json()
    assert reply.get_json()["error"]["field"] == field
    assert tree_client.get(URL, headers=pc_world.county_admin.headers).get_json()["total"] == 0


def test_the_owner_must_be_a_commission_or_bureau_in_the_callers_admin_scope(tree_client, pc_world):
    admin = pc_world.county_admin.headers
    institution = tree_client.post(URL, json=campaign_body(pc_world.institution_ids[0]), headers=admin)
    assert institution.status_code == 422
    assert institution.get_json()["error"]["field"] == "owner_node_id"
    other = tree_client.post(URL, json=campaign_body(pc_world.other_county_id), headers=admin)
    assert other.status_code == 404
    assert other.get_json()["error"]["field"] == "owner_node_id"
    province = tree_client.post(URL, json=campaign_body(pc_world.province_id), headers=admin)
    assert province.status_code == 404
    clinician = tree_client.post(URL, json=campaign_body(pc_world.county_id), headers=pc_world.clinician.headers)
    assert clinician.status_code == 403


def test_a_province_campaign_reaches_down_but_a_county_one_stays_in_its_county(tree_client, pc_world):
    province = _create(tree_client, pc_world, pc_world.province_admin.headers, owner=pc_world.province_id)
    county = _create(tree_client, pc_world)

    def ids(person) -> set[int]:
        return {c["id"] for c in tree_client.get(URL, headers=person.headers).get_json()["items"]}

    assert ids(pc_world.province_admin) == {province["id"], county["id"]}
    assert ids(pc_world.county_admin) == {province["id"], county["id"]}
    assert ids(pc_world.clinician) == {province["id"], county["id"]}
    assert ids(pc_world.other_county_admin) == {province["id"]}
    hidden = tree_client.get(f"{URL}/{county['id']}", headers=pc_world.other_county_admin.headers)
    assert hidden.status_code == 404
    # The county reads the province's campaign but does not run it.
    refused = tree_client.patch(
        f"{URL}/{province['id']}", json={"state": "active"}, headers=pc_world.county_admin.headers
    )
    assert refused.status_code == 403
    assert tree_client.get(f"{URL}/{province['id']}", headers=pc_world.county_admin.headers).get_json()["state"] == (
        "draft"
    )


def test_states_move_draft_active_ended_and_a_running_campaign_keeps_its_template(tree_client, pc_world):
    admin = pc_world.county_admin.headers
    campaign = _create(tree_client, pc_world)
    url = f"{URL}/{campaign['id']}"
    edited = tree_client.patch(url, json={"name": "发热人员随访", "categories": ["发热"]}, headers=admin)
    assert edited.status_code == 200, edited.get_json()
    assert edited.get_json()["categories"] == ["发热"]

    bad = tree_client.patch(url, json={"ends_on": "2026-10-01"}, headers=admin)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "ends_on"
    skip = tree_client.patch(url, json={"state": "ended"}, headers=admin)
    assert skip.status_code == 409 and skip.get_json()["error"]["field"] == "state"

    active = tree_client.patch(url, json={"state": "active"}, headers=admin)
    assert active.status_code == 200 and active.get_json()["state"] == "active"
    locked = tree_client.patch(url, json={"task_template": {"kind": "visit", "fields": []}}, headers=admin)
    assert locked.status_code == 409 and locked.get_json()["error"]["field"] == "task_template"
    later = tree_client.patch(url, json={"deadline_hours": {"routine": 48, "urgent": 12}}, headers=admin)
    assert later.status_code == 200 and later.get_json()["deadline_hours"] == {"routine": 48, "urgent": 12}

    ended = tree_client.patch(url, json={"state": "ended"}, headers=admin)
    assert ended.status_code == 200 and ended.get_json()["state"] == "ended"
    back = tree_client.patch(url, json={"state": "active"}, headers=admin)
    assert back.status_code == 409
    assert tree_client.patch(url, json={"name": "再改"}, headers=admin).status_code == 409
