"""The outbox and inbox lists pinned: which referrals each kind of member sees, the counts by state and `total`,
under every filter and across pages, on both backends.

A couple of dozen referrals are cloned from one created over the API, each changed to exercise one arm of the sides
(institution managers, a department's clinicians, the named target doctor, a down-referral with no department for
the township's family-doctor team, a coordinator on the county's office, supervision), including rows that fall in
two arms at once (a coordinator named on a referral to their own hospital), which must be listed and counted once.
Expected lists are pinned by hand for the main members and, for every member and filter, derived row by row from
`Sides.of` (the rule that opens one referral), so the set-based lists cannot drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from mini_apps.referral import service, states
from mini_apps.referral.models import Referral
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.referral.conftest import Person, ReferralWorld, up_payload
from tests.support.auth import bearer, sign_in
from workbench import db
from workbench.auth.principal import load_principal

INSTITUTION_LEVELS = ("medical_community_lead", "member_institution")


@dataclass
class ListWorld:
    world: ReferralWorld
    people: dict[str, Person]
    member_ids: dict[str, int]
    ids: dict[str, int]  # referral label -> id


def _member_id(session, userid: str) -> int:
    return session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == userid))


def _institution_of(session, node_id: int) -> OrgNode:
    node = session.get(OrgNode, node_id)
    chain = [int(part) for part in node.path.strip("/").split("/") if part]
    return session.scalars(
        sa.select(OrgNode)
        .where(OrgNode.id.in_(chain), OrgNode.level.in_(INSTITUTION_LEVELS))
        .order_by(OrgNode.depth.desc())
    ).first()


def _position(session, userid: str) -> int:
    """The member's (first) department."""
    return session.scalar(
        sa.select(OrgMembership.node_id)
        .join(OrgMember, OrgMember.id == OrgMembership.member_id)
        .where(OrgMember.userid == userid)
        .order_by(OrgMembership.node_id)
    )


def _department_of(session, institution: OrgNode) -> int:
    return session.scalar(
        sa.select(OrgNode.id)
        .where(OrgNode.parent_id == institution.id, OrgNode.level == "internal_department")
        .order_by(OrgNode.id)
    )


@pytest.fixture
def lists(tree_app, tree_client, sandbox, ref_world: ReferralWorld) -> ListWorld:
    w = ref_world
    assert w.other_department_clinician is not None, "the small sandbox province has a second hospital department"
    template = tree_client.post("/api/referrals", json=up_payload(w, submit=True), headers=w.doctor.headers)
    assert template.status_code == 201, template.get_json()

    with tree_app.app_context():
        session = db.session()
        grassroots = session.get(OrgNode, w.grassroots_institution_id)
        county = session.scalars(
            sa.select(OrgNode).where(
                OrgNode.level == "county_bureau", sa.literal(grassroots.path).startswith(OrgNode.path)
            )
        ).one()
        # Another member institution of the county with a department and someone working only there.
        other = None
        for candidate in session.scalars(
            sa.select(OrgNode)
            .where(
                OrgNode.level == "member_institution",
                OrgNode.path.startswith(county.path),
                OrgNode.id != grassroots.id,
                OrgNode.deleted_at.is_(None),
            )
            .order_by(OrgNode.id)
        ):
            department = _department_of(session, candidate)
            staff = (
                session.scalar(
                    sa.select(OrgMember.userid)
                    .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
                    .where(OrgMembership.node_id == department)
                    .order_by(OrgMember.id)
                )
                if department
                else None
            )
            if staff:
                other = (candidate, department, staff)
                break
        assert other is not None, "the county has a second member institution with staff"
        other_institution, other_department, office_userid = other
        named_department = _position(session, w.other_department_clinician.userid)
        far_department = _position(session, w.other_county_doctor.userid)
        far_institution = _institution_of(session, far_department)
        ids = {
            "doctor": _member_id(session, w.doctor.userid),
            "coordinator": _member_id(session, w.coordinators[0].userid),
            "named": _member_id(session, w.other_department_clinician.userid),
        }

    # A coordinator on the county's referral office (an administrative node): every institution under it.
    reply = tree_client.post(
        "/api/auth/grants",
        json={"userid": office_userid, "role": "referral_coordinator", "node_id": county.id},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    office = Person(office_userid, "", bearer(sign_in(tree_client, sandbox, office_userid)))

    g, gd, h, d = w.grassroots_institution_id, w.grassroots_department_id, w.hospital_id, w.hospital_department_id
    g2, g2d, d2 = other_institution.id, other_department, named_department
    x, xd = far_institution.id, far_department
    # label: direction, applicant institution, applicant department, target institution, target department,
    # named target doctor, state, priority
    rows: dict[str, tuple] = {
        "up-draft": ("up", g, gd, h, d, None, "draft", "routine"),
        "up-submitted": ("up", g, gd, h, d, None, "submitted", "routine"),
        "up-submitted-urgent": ("up", g, gd, h, d, None, "submitted", "urgent"),
        "up-accepted-green": ("up", g, gd, h, d, None, "accepted", "green"),
        "up-closed": ("up", g, gd, h, d, None, "closed", "routine"),
        "up-rejected-urgent": ("up", g, gd, h, d, None, "rejected", "urgent"),
        "up-d2-submitted": ("up", g, gd, h, d2, None, "submitted", "routine"),
        "up-d2-scheduled": ("up", g, gd, h, d2, None, "scheduled", "urgent"),
        "up-named": ("up", g, gd, h, d, ids["named"], "submitted", "urgent"),
        "up-named-draft": ("up", g, gd, h, d, ids["named"], "draft", "routine"),
        # In the coordinator's institution arm and their named arm at once: listed once.
        "up-named-coordinator": ("up", g, gd, h, d, ids["coordinator"], "accepted", "routine"),
        # Named elsewhere (as if they also worked there): only the named arm reaches them.
        "lateral-named-coordinator": ("lateral", g, gd, g2, g2d, ids["coordinator"], "submitted", "routine"),
        "down-submitted": ("down", h, d, g, None, None, "submitted", "routine"),
        "down-received-urgent": ("down", h, d, g, None, None, "received_patient", "urgent"),
        "down-rehab": ("down", h, d, g, None, None, "rehab_follow_up", "routine"),
        "down-draft": ("down", h, d, g, None, None, "draft", "routine"),
        "down-named-doctor-closed": ("down", h, d, g, None, ids["doctor"], "closed", "routine"),
        "down-other-township": ("down", h, d, g2, None, None, "submitted", "routine"),
        "lateral-to-doctor": ("lateral", g2, g2d, g, gd, None, "submitted", "routine"),
        "lateral-named-doctor": ("lateral", g2, g2d, g, gd, ids["doctor"], "accepted", "urgent"),
        "far-county": ("lateral", x, xd, x, xd, None, "submitted", "routine"),
        "far-county-draft": ("lateral", x, xd, x, xd, None, "draft", "routine"),
    }
    labels: dict[str, int] = {}
    with tree_app.app_context():
        session = db.session()
        source = session.get(Referral, template.get_json()["id"])
        copied = {c.key: getattr(source, c.key) for c in sa.inspect(Referral).column_attrs}
        for label, (direction, app_i, app_d, tgt_i, tgt_d, named, state, priority) in rows.items():
            referral = Referral(
                **{
                    **copied,
                    "id": None,
                    "referral_no": None,
                    "direction": direction,
                    "applicant_institution_id": app_i,
                    "applicant_department_id": app_d,
                    "target_institution_id": tgt_i,
                    "target_department_id": tgt_d,
                    "target_member_id": named,
                    "state": state,
                    "priority": priority,
                }
            )
            session.add(referral)
            session.flush()
            labels[label] = referral.id
        labels["template"] = source.id
        session.commit()
        ids["office"] = _member_id(session, office_userid)
        ids["receiver"] = _member_id(session, w.receiver.userid)
        ids["county_admin"] = _member_id(session, w.county_admin.userid)
        ids["other_county_doctor"] = _member_id(session, w.other_county_doctor.userid)

    people = {
        "coordinator": w.coordinators[0],
        "receiver": w.receiver,
        "named": w.other_department_clinician,
        "doctor": w.doctor,
        "office": office,
        "county_admin": w.county_admin,
        "other_county_doctor": w.other_county_doctor,
    }
    return ListWorld(world=w, people=people, member_ids=ids, ids=labels)


def _list(client, person: Person, **query: Any) -> dict:
    reply = client.get("/api/referrals", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _all_ids(client, person: Person, **query: Any) -> list[int]:
    """Every page of the list, in order, checked page by page against `total`."""
    found: list[int] = []
    page = 1
    while True:
        body = _list(client, person, page=page, per_page=4, **query)
        found += [item["id"] for item in body["items"]]
        if not body["items"]:
            assert len(found) == body["total"]
            return found
        page += 1


def _labels(lw: ListWorld, ids: list[int]) -> set[str]:
    names = {v: k for k, v in lw.ids.items()}
    return {names[i] for i in ids}


def _visible(app, lw: ListWorld, who: str, box: str) -> list[Referral]:
    """The list by the one-referral rule: `Sides.of` on every referral, newest first."""
    with app.app_context():
        session = db.session()
        principal = load_principal(session, lw.member_ids[who])
        sides = service.sides_of(session, principal)
        referrals = list(session.scalars(sa.select(Referral).order_by(Referral.id.desc())))
        nodes = {n.id: n for n in session.scalars(sa.select(OrgNode))}
        chosen = []
        for r in referrals:
            found = sides.of(r, nodes)
            if box == "inbox":
                column, keep = r.target_institution_id, states.RECEIVER in found
            else:
                column, keep = r.applicant_institution_id, states.APPLICANT in found
            # Supervisors list both boxes of their subtree, never drafts.
            if keep or (r.state != "draft" and sides.supervise.covers_path(nodes[column].path)):
                chosen.append(r)
        session.expunge_all()
        return chosen


def _where(referrals: list[Referral], filters: dict[str, str]) -> list[Referral]:
    return [r for r in referrals if all(getattr(r, key) == value for key, value in filters.items())]


def test_each_member_sees_their_side_once(tree_client, lists: ListWorld):
    lw = lists
    inbox = {who: _labels(lw, _all_ids(tree_client, person, box="inbox")) for who, person in lw.people.items()}
    outbox = {who: _labels(lw, _all_ids(tree_client, person, box="outbox")) for who, person in lw.people.items()}
    to_hospital = {
        "template",
        "up-submitted",
        "up-submitted-urgent",
        "up-accepted-green",
        "up-closed",
        "up-rejected-urgent",
        "up-d2-submitted",
        "up-d2-scheduled",
        "up-named",
        "up-named-coordinator",
    }
    assert inbox["coordinator"] == to_hospital | {"lateral-named-coordinator"}
    assert inbox["receiver"] == to_hospital - {"up-d2-submitted", "up-d2-scheduled"}
    assert inbox["named"] == {"up-d2-submitted", "up-d2-scheduled", "up-named"}
    # The township's family-doctor team: down-referrals with no department, and what names them or their department.
    assert inbox["doctor"] == {
        "down-submitted",
        "down-received-urgent",
        "down-rehab",
        "down-named-doctor-closed",
        "lateral-to-doctor",
        "lateral-named-doctor",
    }
    assert inbox["other_county_doctor"] == {"far-county"}
    in_county = {k for k, v in lw.ids.items() if not k.startswith("far") and not k.endswith("draft")}
    assert inbox["office"] == in_county and inbox["county_admin"] == in_county
    from_grassroots = {k for k in lw.ids if k == "template" or k.startswith("up") or k.endswith("coordinator")}
    assert outbox["doctor"] == from_grassroots
    # The hospital's own down-referrals, drafts included, to anyone acting for it.
    assert outbox["coordinator"] == outbox["receiver"] == outbox["named"] == {k for k in lw.ids if k.startswith("down")}
    assert outbox["other_county_doctor"] == {"far-county", "far-county-draft"}
    assert outbox["office"] == {k for k in lw.ids if not k.startswith("far")}  # drafts too: the office acts for them
    assert outbox["county_admin"] == {k for k in lw.ids if not k.startswith("far") and not k.endswith("draft")}


def test_counts_and_total(tree_client, lists: ListWorld):
    lw = lists
    coordinator = lw.people["coordinator"]
    body = _list(tree_client, coordinator, box="inbox")
    assert body["counts"] == {
        "all": 11,
        "states": {"submitted": 6, "accepted": 2, "scheduled": 1, "closed": 1, "rejected": 1},
    }
    assert body["total"] == 11 and len(body["items"]) == 11
    # The state filter narrows the list and `total`; the counts stay those of the other filters.
    body = _list(tree_client, coordinator, box="inbox", state="submitted")
    assert body["total"] == 6 and len(body["items"]) == 6
    assert body["counts"]["all"] == 11 and body["counts"]["states"]["submitted"] == 6
    body = _list(tree_client, coordinator, box="inbox", state="draft")
    assert body["total"] == 0 and body["items"] == [] and body["counts"]["all"] == 11
    body = _list(tree_client, coordinator, box="inbox", priority="urgent")
    assert body["counts"] == {"all": 4, "states": {"submitted": 2, "rejected": 1, "scheduled": 1}}
    assert body["total"] == 4
    body = _list(tree_client, coordinator, box="inbox", direction="lateral", state="submitted")
    assert body["total"] == 1 and body["items"][0]["id"] == lw.ids["lateral-named-coordinator"]
    doctor = lw.people["doctor"]
    body = _list(tree_client, doctor, box="inbox", direction="down")
    assert body["counts"] == {
        "all": 4,
        "states": {"submitted": 1, "received_patient": 1, "rehab_follow_up": 1, "closed": 1},
    }
    assert [item["id"] for item in body["items"]] == sorted(
        (lw.ids[k] for k in ("down-submitted", "down-received-urgent", "down-rehab", "down-named-doctor-closed")),
        reverse=True,
    )
    body = _list(tree_client, doctor, box="outbox", state="draft")
    assert body["total"] == 2 and body["counts"]["states"]["draft"] == 2
    assert body["counts"]["all"] == 13
    assert _list(tree_client, lw.people["other_county_doctor"], box="inbox")["counts"] == {
        "all": 1,
        "states": {"submitted": 1},
    }


def test_pages_newest_first(tree_client, lists: ListWorld):
    coordinator = lists.people["coordinator"]
    everything = _list(tree_client, coordinator, box="inbox", per_page=100)
    ids = [item["id"] for item in everything["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == everything["total"] == 11
    pages = [_list(tree_client, coordinator, box="inbox", per_page=4, page=n) for n in (1, 2, 3, 4)]
    assert [[item["id"] for item in p["items"]] for p in pages] == [ids[0:4], ids[4:8], ids[8:11], []]
    assert {p["total"] for p in pages} == {11} and {p["counts"]["all"] for p in pages} == {11}
    submitted = _list(tree_client, coordinator, box="inbox", state="submitted", per_page=4, page=2)
    assert submitted["total"] == 6 and len(submitted["items"]) == 2
    assert tree_client.get("/api/referrals?box=inbox&page=0", headers=coordinator.headers).status_code == 422


FILTERS: list[dict[str, str]] = [
    {},
    {"direction": "down"},
    {"direction": "up", "priority": "urgent"},
    {"priority": "routine"},
    {"state": "submitted"},
    {"state": "draft"},
    {"priority": "green", "state": "accepted"},
    {"direction": "lateral", "state": "accepted"},
]


@pytest.mark.parametrize("box", ["inbox", "outbox"])
def test_lists_match_the_one_referral_rule(tree_app, tree_client, lists: ListWorld, box: str):
    lw = lists
    for who, person in lw.people.items():
        visible = _visible(tree_app, lw, who, box)
        for filters in FILTERS:
            expected = _where(visible, filters)
            body = _list(tree_client, person, box=box, per_page=100, **filters)
            assert [item["id"] for item in body["items"]] == [r.id for r in expected], (who, filters)
            assert body["total"] == len(expected), (who, filters)
            by_state: dict[str, int] = {}
            for r in _where(visible, {k: v for k, v in filters.items() if k != "state"}):
                by_state[r.state] = by_state.get(r.state, 0) + 1
            assert body["counts"] == {"all": sum(by_state.values()), "states": by_state}, (who, filters)
