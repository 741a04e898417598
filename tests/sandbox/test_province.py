"""The generated province: deterministic, the right size, a well-formed five-level tree, realistic people."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.province import (
    LEVELS,
    ROOT_ID,
    SCALES,
    Province,
    SandboxDepartment,
    SandboxUser,
    generate,
    uscc_is_valid,
)

CORP = "dingsandbox"


def fingerprint(province: Province) -> tuple:
    """Everything observable, in a comparable form (dict order included: the APIs expose it)."""
    return (
        [dataclasses.astuple(d) for d in province.departments.values()],
        [dataclasses.astuple(u) for u in province.users.values()],
        [province.children(d) for d in province.departments],
        [province.dept_userids(d) for d in province.departments],
    )


@pytest.fixture(scope="module")
def small() -> Province:
    return generate(7, "small", CORP)


@pytest.fixture(scope="module")
def county() -> Province:
    return generate(7, "county", CORP)


@pytest.fixture(scope="module")
def city() -> Province:
    return generate(7, "city", CORP)


def test_same_seed_gives_the_same_province_and_another_seed_does_not(small: Province) -> None:
    assert fingerprint(generate(7, "small", CORP)) == fingerprint(small)
    other = generate(8, "small", CORP)
    assert fingerprint(other) != fingerprint(small)
    assert set(other.users).isdisjoint(small.users)


def test_unknown_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        generate(1, "planet", CORP)
    assert SCALES == ("small", "county", "city", "province")


def test_small_counts(small: Province) -> None:
    s = small.summary()
    assert (s["city_commission"], s["county_bureau"], s["medical_community_lead"]) == (1, 2, 4)
    assert 12 <= s["member_institution"] <= 26
    assert 1_200 <= s["users"] <= 1_800
    assert 350 <= s["departments"] <= 650
    assert small.corp_id == CORP and small.departments[ROOT_ID].name == "浙江省卫生健康委员会"


def test_county_counts_are_modelled_on_wufeng(county: Province) -> None:
    s = county.summary()
    assert (s["city_commission"], s["county_bureau"], s["medical_community_lead"]) == (1, 1, 1)
    assert s["member_institution"] == 10  # 2 other county units + 8 township hospitals
    villages = [d for d in county.departments.values() if d.name.endswith(("村卫生室", "村卫生服务站"))]
    assert 120 <= len(villages) <= 152
    assert 800 <= s["users"] <= 1_060
    bureau = next(d for d in county.departments.values() if d.level == "county_bureau")
    assert bureau.name.startswith("五峰")


def test_city_counts(city: Province) -> None:
    s = city.summary()
    assert (s["city_commission"], s["county_bureau"]) == (1, 10)
    assert 12 <= s["medical_community_lead"] <= 24
    assert 20_000 <= s["users"] <= 32_000
    assert 3_500 <= s["departments"] <= 5_000
    assert 7 <= s["max_depth"] <= 8


@pytest.mark.parametrize("name", ["small", "county", "city"])
def test_every_invariant_holds(name: str, request: pytest.FixtureRequest) -> None:
    province: Province = request.getfixturevalue(name)
    assert province.validate() == []


def test_levels_form_the_five_level_tree(small: Province) -> None:
    rank = {level: i for i, level in enumerate(LEVELS)}
    assert small.departments[ROOT_ID].level == "province_commission"
    assert small.departments[ROOT_ID].parent_id is None
    for dept in small.departments.values():
        chain = small.parent_chain(dept.dept_id)
        assert chain[0] == dept.dept_id and chain[-1] == ROOT_ID
        levels = [small.departments[d].level for d in reversed(chain)]  # root first
        assert levels == sorted(levels, key=rank.__getitem__), levels  # never goes back up the hierarchy
        if dept.level != "internal_department":
            assert levels == list(LEVELS[: rank[dept.level] + 1]), (dept.name, levels)  # no level skipped
        if dept.level == "member_institution":
            assert small.departments[dept.parent_id].level == "medical_community_lead"


def test_names_and_codes_make_classification_non_trivial(city: Province) -> None:
    institutions = [d for d in city.departments.values() if d.level != "internal_department"]
    with_code = [d for d in institutions if d.code]
    assert 0.5 <= len(with_code) / len(institutions) <= 0.8
    assert all(uscc_is_valid(d.code) for d in with_code)
    assert all(d.code is None for d in city.departments.values() if d.level == "internal_department")
    leads = [d.name for d in city.departments.values() if d.level == "medical_community_lead"]
    assert any("医共体" not in n for n in leads) and any("医共体" in n for n in leads)
    members = [d.name for d in city.departments.values() if d.level == "member_institution"]
    assert any(n.endswith("卫生院") for n in members)
    assert any("分院" in n for n in members)
    assert any("社区卫生服务中心" in n for n in members)


def test_uscc_checksum() -> None:
    assert uscc_is_valid("91350100M000100Y43")  # a published example
    assert not uscc_is_valid("91350100M000100Y44")
    assert not uscc_is_valid("12330100")


def test_children_members_and_lookups_are_ordered_and_consistent(small: Province) -> None:
    for dept_id, dept in small.departments.items():
        kids = small.children(dept_id)
        assert kids == sorted(kids, key=lambda k: (small.departments[k].order, k))
        assert all(small.departments[k].parent_id == dept_id for k in kids)
        members = small.dept_userids(dept_id)
        assert members == sorted(members, key=lambda u: (small.users[u].dept_orders[dept_id], u))
        leaders = [u for u in members if small.users[u].leader_in_dept[dept_id]]
        assert sorted(leaders) == sorted(dept.manager_userids)
        assert len(leaders) <= 2
        if members and not leaders:  # only people seconded from elsewhere (the department was generated empty)
            assert all(len(small.users[u].dept_ids) > 1 for u in members)
    user = next(iter(small.users.values()))
    assert small.user_by_mobile(user.mobile) is user and small.user_by_unionid(user.unionid) is user
    assert small.user_by_mobile("10000000000") is None and small.user_by_unionid("nope") is None
    assert small.children(123) == [] and small.dept_userids(123) == [] and small.parent_chain(123) == []


def test_people_look_real(small: Province, city: Province) -> None:
    users = list(small.users.values())
    assert all(re.fullmatch(r"1[3-9]\d{9}", u.mobile) for u in users)
    assert all(len(u.unionid) == 22 and u.unionid.endswith("iE") for u in users)
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,4}", u.name) for u in users)
    assert all(u.title for u in users)
    spread = max(u.hired_date for u in users) - min(u.hired_date for u in users)
    assert spread > 25 * 365 * 86_400_000
    admins = [u for u in users if u.admin]
    assert 3 <= len(admins) <= 5 and all(ROOT_ID in small.parent_chain(u.dept_ids[0]) for u in admins)
    assert sum(u.userid.startswith("manager") for u in admins) == 1
    assert [u.title for u in users if u.boss] == ["主任"]
    multi = sum(len(u.dept_ids) > 1 for u in city.users.values()) / len(city.users)
    assert 0.05 <= multi <= 0.08
    assert max(len(u.dept_ids) for u in city.users.values()) == 3
    names = Counter(u.name for u in city.users.values())
    assert names.most_common(1)[0][1] > 1  # common names repeat, as in real life
    titles = Counter(u.title for u in city.users.values())
    for title in ("主任医师", "主治医师", "护师", "乡村医生", "科长", "院长", "局长", "处长"):
        assert titles[title] > 0, title
    villages = [d for d in small.departments.values() if d.name.endswith("村卫生室") and not small.children(d.dept_id)]
    assert villages and all(small.users[u].title.startswith(("乡村", "护士")) for d in villages[:20] for u in
                            small.dept_userids(d.dept_id) if len(small.users[u].dept_ids) == 1)  # fmt: skip


def test_department_mutations_keep_indexes_and_refuse_what_dingtalk_refuses() -> None:
    p = generate(3, "small", CORP)
    lead = next(d for d in p.departments.values() if d.level == "medical_community_lead")
    with pytest.raises(ValueError):
        p.remove_department(ROOT_ID)
    with pytest.raises(ValueError):
        p.move_department(ROOT_ID, lead.dept_id)
    with pytest.raises(ValueError):
        p.move_department(lead.parent_id, lead.dept_id)  # under its own descendant
    with pytest.raises(ValueError):
        p.remove_department(lead.dept_id)  # has children and members
    first = p.departments[p.children(lead.dept_id)[0]]
    with pytest.raises(ValueError):
        p.add_department(SandboxDepartment(55, first.name, lead.dept_id, 1, None, None, [], "internal_department"))
    new = p.add_department(SandboxDepartment(55, "新部门", lead.dept_id, 0, None, None, [], "internal_department"))
    assert p.children(lead.dept_id)[0] == new.dept_id  # order 0 sorts first
    p.move_department(55, first.dept_id)
    assert 55 in p.children(first.dept_id) and 55 not in p.children(lead.dept_id)
    assert p.parent_chain(55)[:3] == [55, first.dept_id, lead.dept_id]
    p.rename_department(55, "更名部门")
    p.remove_department(55)
    assert 55 not in p.departments and p.validate() == []


def test_user_mutations_keep_indexes_and_leaders_consistent() -> None:
    p = generate(3, "small", CORP)
    leader_id = p.departments[ROOT_ID].manager_userids[0]
    leader = p.users[leader_id]
    other = next(u for u in p.users.values() if u.userid != leader_id)
    with pytest.raises(ValueError):
        p.update_user(other.userid, mobile=leader.mobile)
    old_mobile, old_title = other.mobile, other.title
    assert p.update_user(other.userid, mobile="19900000001", title="新职务") == {
        "mobile": (old_mobile, "19900000001"),
        "title": (old_title, "新职务"),
    }
    with pytest.raises(ValueError):
        p.update_user(other.userid, dept_ids=[1])  # departments change only through change_user_departments
    assert p.user_by_mobile("19900000001") is other and p.user_by_mobile(old_mobile) is None
    target = p.children(ROOT_ID)[0]
    p.change_user_departments(leader_id, [target], leaders=frozenset({target}))
    assert leader_id not in p.departments[ROOT_ID].manager_userids
    assert leader_id in p.departments[target].manager_userids
    assert p.dept_userids(target)[-1] == leader_id  # joined at the end
    with pytest.raises(ValueError):
        p.change_user_departments(leader_id, [])
    p.set_leader(leader_id, target, False)
    assert leader_id not in p.departments[target].manager_userids
    user = SandboxUser("u1", "uid1iE", "王芳", "19900000002", "护士", "", "", 0, [target, ROOT_ID], {}, {ROOT_ID: True})
    p.add_user(user)
    assert user.dept_orders.keys() == user.leader_in_dept.keys() == {target, ROOT_ID}
    assert "u1" in p.departments[ROOT_ID].manager_userids
    with pytest.raises(ValueError):
        p.add_user(SandboxUser("u2", "uid2iE", "李强", "19900000002", "护士", "", "", 0, [target], {}, {}))
    p.remove_user("u1")
    assert "u1" not in p.departments[ROOT_ID].manager_userids and "u1" not in p.dept_userids(target)
    assert p.user_by_unionid("uid1iE") is None
    assert p.validate() == []


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_any_seed_gives_a_consistent_small_province(seed: int) -> None:
    province = generate(seed, "small", CORP)
    assert province.validate() == []
    s = province.summary()
    assert s["medical_community_lead"] == 4 and 1_200 <= s["users"] <= 1_800
