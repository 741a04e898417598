"""A county with a family-doctor team: its admin, two doctors of one institution (one on the team), and another
county's admin — signed in over HTTP against the session sandbox's tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from mini_apps.family_doctor import idcard
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id


@dataclass
class World:
    county_admin: dict[str, str]
    other_county_admin: dict[str, str]
    doctor: dict[str, str]  # on the team
    colleague: dict[str, str]  # same institution, not on the team
    institution_id: int
    team_id: int
    team_name: str


def _doctors_by_institution(t: Tree, county: int) -> dict[int, list[dict]]:
    """Members working only in departments of one member institution of the county, by institution."""
    found: dict[int, list[dict]] = {}
    for user in t.users:
        depts = user["dept_id_list"]
        if not depts or any(t.level(d) != "internal_department" for d in depts):
            continue
        units = {t.unit_of(d) for d in depts}
        if len(units) == 1:
            unit = units.pop()
            if t.level(unit) == "member_institution" and t.county_of(unit) == county:
                found.setdefault(unit, []).append(user)
    return found


@pytest.fixture
def world(tree_app, tree_client, sandbox, tree) -> World:
    t = Tree(tree)
    county, other = None, None
    for candidate in t.counties():
        by_institution = _doctors_by_institution(t, candidate)
        pair = next(((inst, users) for inst, users in by_institution.items() if len(users) >= 2), None)
        if pair is None:
            continue
        try:
            t.member_at("county_bureau", county=candidate)
        except LookupError:
            continue
        if county is None:
            county, (institution, doctors) = candidate, pair
        elif other is None:
            other = candidate
            break
    assert county is not None and other is not None, "the small sandbox province should have two such counties"

    def headers(user: dict) -> dict[str, str]:
        return bearer(sign_in(tree_client, sandbox, user["userid"]))

    admin = headers(t.member_at("county_bureau", county=county))
    institution_node = node_id(tree_app, institution)
    reply = tree_client.post(
        "/api/family-doctor/teams", json={"institution_id": institution_node, "name": "第一家庭医生团队"}, headers=admin
    )
    assert reply.status_code == 201, reply.get_json()
    team = reply.get_json()
    reply = tree_client.post(
        f"/api/family-doctor/teams/{team['id']}/members",
        json={"userid": doctors[0]["userid"], "role": "leader"},
        headers=admin,
    )
    assert reply.status_code == 200, reply.get_json()
    return World(
        county_admin=admin,
        other_county_admin=headers(t.member_at("county_bureau", county=other)),
        doctor=headers(doctors[0]),
        colleague=headers(doctors[1]),
        institution_id=institution_node,
        team_id=team["id"],
        team_name=team["name"],
    )


def id_number(n: int, born: date = date(1950, 3, 7), address: str = "330102") -> str:
    return idcard.make(address, born, n)
