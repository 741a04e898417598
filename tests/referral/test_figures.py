"""Referral figures on both backends: a small known dataset between the world's grassroots institution and its
county's lead hospital (referrals made over the API, their clocks driven through `apply_transition`), exact figures
per institution, the roll-up as sum ÷ sum, the period, and scope."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor.service import CHINA, today
from mini_apps.referral import figures, states
from mini_apps.referral.models import Referral
from mini_apps.referral.service import apply_transition
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.referral.conftest import ReferralWorld, up_payload
from workbench import db

API = "/api/referrals/figures"


def _create(client, headers, body) -> int:
    reply = client.post("/api/referrals", json=body, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["id"]


def _drive(app, referral_id: int, submitted: datetime, steps: list[tuple[str, str, float]]) -> None:
    """Set when it was submitted, then take each (action, side, hours after submission)."""
    with app.app_context():
        session = db.session()
        referral = session.get(Referral, referral_id)
        referral.submitted_at = submitted
        session.commit()
        for action, side, hours in steps:
            apply_transition(
                session,
                referral,
                action,
                actor="test",
                member_id=None,
                side=side,
                reason="无床位" if action == "reject" else "",
                now=submitted + timedelta(hours=hours),
            )
        session.commit()


def _down(w: ReferralWorld, parent: int) -> dict:
    return {
        "direction": "down",
        "mode": "outpatient",
        "priority": "routine",
        "applicant_department_id": w.hospital_department_id,
        "target_institution_id": w.grassroots_institution_id,
        "reason_code": "rehab_chronic",
        "parent_id": parent,
        "consent": True,
        "submit": True,
        "primary_diagnosis": {"code": "I10"},
    }


@pytest.fixture
def dataset(tree_app, tree_client, ref_world: ReferralWorld) -> dict:
    """Five up-referrals grassroots → hospital and two down-referrals back, submitted today at 09:00 (China)."""
    w = ref_world
    base = datetime.combine(today(), time(9), CHINA)
    a, r = states.APPLICANT, states.RECEIVER
    up = [_create(tree_client, w.doctor.headers, up_payload(w, submit=True)) for _ in range(4)]
    urgent = _create(tree_client, w.doctor.headers, up_payload(w, submit=True, priority="urgent"))
    _drive(  # accepted in 2 h (within 24 h), arrived, treated, closed
        tree_app,
        up[0],
        base,
        [("accept", r, 2), ("arrive", r, 3), ("complete", r, 5), ("close", a, 6)],
    )
    _drive(tree_app, up[1], base, [("accept", r, 30)])  # accepted late
    _drive(tree_app, up[2], base, [("reject", r, 1)])  # responded, not accepted
    _drive(tree_app, up[3], base, [])  # no answer yet
    _drive(tree_app, urgent, base, [("accept", r, 3)])  # urgent: 2 h, so late
    downs = [_create(tree_client, w.receiver.headers, _down(w, up[0])) for _ in range(2)]
    _drive(tree_app, downs[0], base, [("accept", r, 1), ("receive_patient", r, 20), ("start_follow_up", r, 40)])
    _drive(tree_app, downs[1], base, [("accept", r, 1)])
    # Drafts never count.
    _create(tree_client, w.doctor.headers, up_payload(w))
    with tree_app.app_context():
        county = db.session().get(OrgNode, w.hospital_id).parent_id
    return {"county": county}


def _by_node(items: list[dict]) -> dict[int, dict]:
    return {item["node_id"]: item for item in items}


def test_figures_exact_per_institution_and_summed_up(tree_app, tree_client, ref_world, dataset, backend):
    w = ref_world
    reply = tree_client.get(API, headers=w.county_admin.headers)
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["end"] == today().isoformat() and body["start"] == today().replace(day=1).isoformat()
    items = _by_node(body["items"])
    grassroots, hospital, county = items[w.grassroots_institution_id], items[w.hospital_id], items[dataset["county"]]
    median = backend == "postgresql"

    # The township health centre alone: sent 5 up, received 2 down.
    assert {k: grassroots[k] for k in ("up_out", "up_in", "down_out", "down_in", "sent", "closed")} == {
        "up_out": 5,
        "up_in": 0,
        "down_out": 0,
        "down_in": 2,
        "sent": 5,
        "closed": 1,
    }
    assert grassroots["closure_rate"] == pytest.approx(1 / 5)
    assert (grassroots["responded"], grassroots["accepted"], grassroots["accepted_within_sla"]) == (2, 2, 2)
    assert grassroots["timely_acceptance_rate"] == 1.0 and grassroots["acceptance_hours_mean"] == 1.0
    assert grassroots["acceptance_hours_median"] == (1.0 if median else None)
    assert (grassroots["arrived"], grassroots["arrival_rate"]) == (1, 0.5)
    assert (grassroots["down_followed_up"], grassroots["down_follow_up_rate"]) == (1, 0.5)

    # The lead hospital holds its member institutions: its figures and the county's are the sums, rates sum ÷ sum.
    for node in (hospital, county):
        assert (node["up_out"], node["up_in"], node["down_out"], node["down_in"]) == (5, 5, 2, 2)
        assert (node["sent"], node["closed"]) == (7, 1) and node["closure_rate"] == pytest.approx(1 / 7)
        assert (node["responded"], node["accepted"], node["accepted_within_sla"]) == (6, 5, 3)
        assert node["timely_acceptance_rate"] == 0.5  # (1 + 2) ÷ (4 + 2), not the mean of 1/4 and 1
        assert node["acceptance_hours_mean"] == pytest.approx((2 + 30 + 3 + 1 + 1) / 5)
        assert node["acceptance_hours_median"] == (2.0 if median else None)
        assert (node["arrived"], node["arrival_rate"]) == (2, pytest.approx(2 / 5))
        assert node["down_follow_up_rate"] == 0.5
    assert [i["node_id"] for i in body["items"]].index(dataset["county"]) < [i["node_id"] for i in body["items"]].index(
        w.hospital_id
    )

    # Up-referrals of the hospital alone are what was sent to it; the function gives the same as the API.
    with tree_app.app_context():
        direct = _by_node(
            [vars(f) for f in figures.referral_figures(db.session(), start=today(), end=today(), root_ids=None)]
        )
    assert direct[w.hospital_id]["up_in"] == 5 and direct[dataset["county"]]["responded"] == 6

    # The period: nothing was submitted yesterday.
    yesterday = (today() - timedelta(days=1)).isoformat()
    reply = tree_client.get(f"{API}?start={yesterday}&end={yesterday}", headers=w.county_admin.headers)
    listed = _by_node(reply.get_json()["items"])
    assert listed[dataset["county"]]["sent"] == 0 and w.hospital_id not in listed
    reply = tree_client.get(f"{API}?start={today()}&end={yesterday}", headers=w.county_admin.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "start"


def test_figures_scope(tree_app, tree_client, ref_world, dataset):
    w = ref_world
    reply = tree_client.get(f"{API}?node_id={w.grassroots_institution_id}", headers=w.county_admin.headers)
    assert reply.status_code == 200
    assert [i["node_id"] for i in reply.get_json()["items"]] == [w.grassroots_institution_id]

    with tree_app.app_context():
        session = db.session()
        elsewhere = session.scalar(
            sa.select(OrgMembership.node_id)
            .join(OrgMember, OrgMember.id == OrgMembership.member_id)
            .where(OrgMember.userid == w.other_county_doctor.userid)
        )
    reply = tree_client.get(f"{API}?node_id={elsewhere}", headers=w.county_admin.headers)
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "node_id"
    # Clinicians and coordinators read referrals, not supervision figures.
    assert tree_client.get(API, headers=w.doctor.headers).status_code == 403
    assert tree_client.get(API, headers=w.coordinators[0].headers).status_code == 403

    # An institution admin reads their institution's subtree only.
    reply = tree_client.post(
        "/api/auth/grants",
        json={"userid": w.doctor.userid, "role": "institution_admin", "node_id": w.grassroots_institution_id},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    reply = tree_client.get(API, headers=w.doctor.headers)
    assert reply.status_code == 200
    assert [i["node_id"] for i in reply.get_json()["items"]] == [w.grassroots_institution_id]
    assert reply.get_json()["items"][0]["up_out"] == 5
    assert tree_client.get(f"{API}?node_id={w.hospital_id}", headers=w.doctor.headers).status_code == 404
