"""A province for supervision tests, signed in over HTTP against the session sandbox's tree: the province
commission's administrator (edits the catalog, sets targets, registers feed systems), a county bureau's
administrator, and an institution's clinician (no supervision rights)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id


@dataclass
class Person:
    userid: str
    name: str
    headers: dict[str, str]


@dataclass
class SupervisionWorld:
    tree: Tree
    province_admin: Person
    county_admin: Person
    clinician: Person
    province_id: int  # org node ids
    county_id: int
    institution_ids: list[int]  # the institutions (lead hospitals and member institutions) of that county


@pytest.fixture
def sup_world(tree_app, tree_client, sandbox, tree) -> SupervisionWorld:
    t = Tree(tree)

    def person(user: dict) -> Person:
        return Person(user["userid"], user["name"], bearer(sign_in(tree_client, sandbox, user["userid"])))

    province_dept = next(d for d in t.depts if t.level(d) == "province_commission")
    county = next(c for c in t.counties() if t.institutions_under(c))
    return SupervisionWorld(
        tree=t,
        province_admin=person(t.member_at("province_commission")),
        county_admin=person(t.member_at("county_bureau", county=county)),
        clinician=person(t.member_at("internal_department", "member_institution", county=county)),
        province_id=node_id(tree_app, province_dept),
        county_id=node_id(tree_app, county),
        institution_ids=[node_id(tree_app, d) for d in t.institutions_under(county)],
    )
