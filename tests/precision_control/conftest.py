"""A county for 精密智控 tests, signed in over HTTP against the session sandbox's tree: the county bureau's
administrator (creates campaigns, uploads rosters), the province commission's administrator, another county's
administrator (outside the first county's subtree) and a clinician of one of the county's institutions (no admin
rights). `division` is the county's six-digit 行政区划代码 when its node carries an organ 统一社会信用代码, else a
fixed code; roster rows of tests use it (and longer codes beneath it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import idcard
from org_sync.classify import uscc_kind
from org_sync.models import OrgNode
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id
from workbench import db

DEFAULT_DIVISION = "330102"


@dataclass
class Person:
    userid: str
    name: str
    headers: dict[str, str]


@dataclass
class ControlWorld:
    tree: Tree
    county_admin: Person
    province_admin: Person
    other_county_admin: Person
    clinician: Person
    province_id: int  # org node ids
    county_id: int
    other_county_id: int
    institution_ids: list[int]  # the institutions (lead hospitals and member institutions) of the county
    division: str  # the county's 6-digit division code


def _division_of(app, county_node: int) -> str:
    with app.app_context():
        code = db.session().scalar(sa.select(OrgNode.code).where(OrgNode.id == county_node))
    if code and uscc_kind(code) == "organ":
        return code[2:8]
    return DEFAULT_DIVISION


@pytest.fixture
def pc_world(tree_app, tree_client, sandbox, tree) -> ControlWorld:
    t = Tree(tree)

    def person(user: dict) -> Person:
        return Person(user["userid"], user["name"], bearer(sign_in(tree_client, sandbox, user["userid"])))

    counties = []
    for candidate in t.counties():
        if not t.institutions_under(candidate):
            continue
        try:
            t.member_at("county_bureau", county=candidate)
        except LookupError:
            continue
        counties.append(candidate)
        if len(counties) == 2:
            break
    assert len(counties) == 2, "the small sandbox province should have two counties with admins and institutions"
    county, other = counties
    province_dept = next(d for d in t.depts if t.level(d) == "province_commission")
    county_node = node_id(tree_app, county)
    return ControlWorld(
        tree=t,
        county_admin=person(t.member_at("county_bureau", county=county)),
        province_admin=person(t.member_at("province_commission")),
        other_county_admin=person(t.member_at("county_bureau", county=other)),
        clinician=person(t.member_at("internal_department", "member_institution", county=county)),
        province_id=node_id(tree_app, province_dept),
        county_id=county_node,
        other_county_id=node_id(tree_app, other),
        institution_ids=[node_id(tree_app, d) for d in t.institutions_under(county)],
        division=_division_of(tree_app, county_node),
    )


def id_number(n: int, born: date = date(1960, 5, 4), address: str = DEFAULT_DIVISION) -> str:
    """A valid GB 11643 ID number, distinct per `n`."""
    return idcard.make(address, born, n)


def campaign_body(owner_node_id: int, **overrides) -> dict:
    """A valid campaign creation body; override any field."""
    body = {
        "name": "重点人群随访",
        "owner_node_id": owner_node_id,
        "population": "发热门诊就诊者",
        "categories": ["发热", "密接"],
        "task_template": {
            "kind": "follow_up",
            "fields": [
                {"code": "temperature", "label": "体温", "type": "number", "required": True, "min": 34, "max": 43},
                {
                    "code": "result",
                    "label": "检测结果",
                    "type": "choice",
                    "required": True,
                    "choices": ["阴性", "阳性"],
                    "positive": "阳性",
                },
            ],
        },
        "deadline_hours": {"routine": 72, "urgent": 24},
        "escalation_hours": [0, 24, 48],
        "index_rule": {"measure": "completion_rate", "thresholds": [60, 70, 80, 90]},
        "starts_on": "2026-11-01",
        "ends_on": "2026-12-31",
        "retention_until": "2027-06-30",
    }
    body.update(overrides)
    return body
