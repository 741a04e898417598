"""Revealing a resident's full ID number and phone, on both backends: a reason is required and kept in the audit
log (the values never are), the resident's team and institution admins may, others get 404 or 403, the answer
is never cached and nothing sensitive reaches the logs."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from mini_apps.family_doctor import service
from org_sync.models import OrgNode
from tests.family_doctor.conftest import World, id_number
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import Principal, Role
from workbench.errors import ApiError

API = "/api/family-doctor"
PHONE = "13912345678"


def _signed(client, world: World) -> tuple[int, str]:
    number = id_number(41)
    reply = client.post(
        f"{API}/contracts",
        json={"name": "李四", "id_number": number, "phone": PHONE, "team_id": world.team_id, "tags": ["diabetes"]},
        headers=world.doctor,
    )
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["id"], number


def _reveals(app) -> list[AuditRecord]:
    with app.app_context():
        return (
            db.session()
            .scalars(
                sa.select(AuditRecord)
                .where(AuditRecord.action == "family_doctor.resident.reveal")
                .order_by(AuditRecord.id)
            )
            .all()
        )


def test_team_doctor_reveals_with_a_logged_reason(tree_app, tree_client, world: World, caplog):
    caplog.set_level(logging.DEBUG)
    client = tree_client
    resident_id, number = _signed(client, world)
    url = f"{API}/residents/{resident_id}/identity"

    for body in ({}, {"reason": "看"}, {"reason": "  随访  "}, {"reason": "因" * 201}, {"reason": None}):
        reply = client.post(url, json=body, headers=world.doctor)
        assert reply.status_code == 422, (body, reply.get_json())
        assert reply.get_json()["error"]["field"] == "reason"
    assert _reveals(tree_app) == []

    reason = "电话随访需核对联系电话"
    reply = client.post(url, json={"reason": reason}, headers=world.doctor)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json() == {"resident_id": resident_id, "id_number": number, "phone": PHONE}
    assert "no-store" in reply.headers["Cache-Control"]
    # The ordinary view stays masked.
    detail = client.get(f"{API}/residents/{resident_id}", headers=world.doctor).get_json()
    assert detail["id_number"] != number and detail["phone"] != PHONE

    [record] = _reveals(tree_app)
    assert record.outcome == "ok" and record.resource_type == "resident" and record.resource_id == str(resident_id)
    assert record.node_id == world.institution_id and record.actor_member_id is not None
    assert record.detail["reason"] == reason and record.detail["team_id"] == world.team_id
    stored = json.dumps(record.detail, ensure_ascii=False)
    assert number not in stored and PHONE not in stored

    assert number not in caplog.text and PHONE not in caplog.text and "李四" not in caplog.text


def test_who_may_reveal(tree_app, tree_client, world: World, caplog):
    caplog.set_level(logging.DEBUG)
    client = tree_client
    resident_id, number = _signed(client, world)
    url = f"{API}/residents/{resident_id}/identity"
    body = {"reason": "核对身份信息"}

    # A doctor of another team of the same institution, another county's admin: the resident does not exist.
    reply = client.post(
        f"{API}/teams", json={"institution_id": world.institution_id, "name": "二团队"}, headers=world.county_admin
    )
    assert reply.status_code == 201
    team2 = reply.get_json()["id"]
    me = client.get("/api/me", headers=world.colleague)
    assert me.status_code == 200, me.get_json()
    reply = client.post(
        f"{API}/teams/{team2}/members",
        json={"userid": me.get_json()["member"]["userid"], "role": "doctor"},
        headers=world.county_admin,
    )
    assert reply.status_code == 200, reply.get_json()
    for headers in (world.colleague, world.other_county_admin):
        reply = client.post(url, json=body, headers=headers)
        assert reply.status_code == 404, reply.get_json()
        assert number not in reply.get_data(as_text=True)
    assert _reveals(tree_app) == []

    # The county admin sees the resident masked but may not unmask: 403, and the refusal is on record.
    assert client.get(f"{API}/residents/{resident_id}", headers=world.county_admin).status_code == 200
    reply = client.post(url, json=body, headers=world.county_admin)
    assert reply.status_code == 403
    assert number not in reply.get_data(as_text=True) and PHONE not in reply.get_data(as_text=True)
    [denied] = _reveals(tree_app)
    assert denied.outcome == "denied" and denied.detail["reason"] == body["reason"]

    # The institution's admin may (the rule without a request: a principal built by hand).
    with tree_app.app_context():
        session = db.session()
        path = session.get(OrgNode, world.institution_id).path
        head = Principal(
            member_id=None,
            corp_id="corp",
            userid="head",
            name="院长",
            roles=(Role("institution_admin", world.institution_id, path, "grant"),),
        )
        revealed = service.reveal_identity(head, resident_id, "院长核查签约", session=session)
        assert (revealed["id_number"], revealed["phone"]) == (number, PHONE)
        try:
            service.reveal_identity(head, resident_id, "   ", session=session)
        except ApiError as exc:
            assert (exc.status, exc.field) == (422, "reason")
        else:
            raise AssertionError("a blank reason was accepted")
    assert [r.outcome for r in _reveals(tree_app)] == ["denied", "ok"]
    assert number not in caplog.text and PHONE not in caplog.text
