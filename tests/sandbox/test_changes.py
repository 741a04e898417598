"""Contact changes: invariants survive, events name the right ids in the right order, runs are deterministic."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.changes import EVENT_TYPES, ContactEvent, apply_changes
from sandbox.province import Province, generate

CORP = "dingsandbox"
_ATTR = {"jobNumber": "job_number", "workPlace": "work_place"}


def state(province: Province) -> tuple:
    return (
        [dataclasses.astuple(d) for d in province.departments.values()],
        [dataclasses.astuple(u) for u in province.users.values()],
        province.now_ms,
    )


def test_invariants_hold_after_500_changes() -> None:
    province = generate(7, "small", CORP)
    users_before = len(province.users)
    events = apply_changes(province, 500, seed=1)
    assert province.validate() == []
    assert len(events) >= 500
    kinds = Counter(e.event_type for e in events)
    assert set(kinds) == set(EVENT_TYPES), kinds
    assert kinds["user_dept_change"] > kinds["org_dept_remove"]
    assert abs(len(province.users) - users_before) < users_before * 0.2  # hires and departures roughly balance
    assert province.departments[1].parent_id is None
    assert all(isinstance(e, ContactEvent) for e in events)
    assert all(e.user_ids and not e.dept_ids for e in events if e.event_type.startswith("user_"))
    assert all(len(e.dept_ids) == 1 and not e.user_ids for e in events if e.event_type.startswith("org_"))
    assert all((e.diff is not None) == (e.event_type == "user_modify_org") for e in events)


def test_each_event_names_the_right_ids() -> None:
    """One change at a time, compared with the state before and after it."""
    p = generate(11, "small", CORP)
    moved_institutions = 0
    for step in range(320):
        users_before = {u: list(x.dept_ids) for u, x in p.users.items()}
        parents_before = {d: x.parent_id for d, x in p.departments.items()}
        children_before = {d: p.children(d) for d in p.departments}
        members_before = {d: set(p.dept_userids(d)) for d in p.departments}
        clock = p.now_ms
        events = apply_changes(p, 1, seed=step)
        assert events and p.now_ms > clock
        moved_out: set[str] = set()
        for event in events:
            if event.event_type == "user_add_org":
                (userid,) = event.user_ids
                assert userid not in users_before and userid in p.users
                assert p.users[userid].hired_date <= p.now_ms
            elif event.event_type == "user_leave_org":
                (userid,) = event.user_ids
                assert userid in users_before and userid not in p.users
            elif event.event_type == "user_modify_org":
                (userid,) = event.user_ids
                user = p.users[userid]
                prev, curr = event.diff["prev"], event.diff["curr"]
                assert curr and prev.keys() == curr.keys()
                for key, value in curr.items():
                    assert getattr(user, _ATTR.get(key, key)) == value and prev[key] != value
                assert user.modified_at > clock
            elif event.event_type == "user_dept_change":
                for userid in event.user_ids:
                    assert p.users[userid].dept_ids != users_before.get(userid)
                    moved_out.add(userid)
            elif event.event_type == "org_dept_create":
                (dept_id,) = event.dept_ids
                assert dept_id not in parents_before and dept_id in p.departments
                assert p.departments[dept_id].level == "internal_department"
            elif event.event_type == "org_dept_modify":
                (dept_id,) = event.dept_ids
                dept = p.departments[dept_id]
                if dept.level == "member_institution" and dept.parent_id != parents_before[dept_id]:
                    assert p.departments[dept.parent_id].level == "medical_community_lead"
                    moved_institutions += 1
            elif event.event_type == "org_dept_remove":
                (dept_id,) = event.dept_ids
                assert dept_id in parents_before and dept_id not in p.departments
                assert children_before[dept_id] == []  # only leaves can go
                assert members_before[dept_id] <= moved_out  # everyone was moved out first
                assert all(dept_id not in p.users[u].dept_ids for u in members_before[dept_id])
        if step % 80 == 79:
            assert p.validate() == []
    assert p.validate() == []
    assert moved_institutions >= 1


def test_same_seed_same_changes_and_another_seed_differs() -> None:
    a, b, c = (generate(5, "small", CORP) for _ in range(3))
    events_a = apply_changes(a, 150, seed=9)
    assert apply_changes(b, 150, seed=9) == events_a
    assert state(a) == state(b)
    assert apply_changes(c, 150, seed=10) != events_a


def test_a_county_with_one_medical_community_still_changes() -> None:
    """Wufeng has a single 医共体, so institutions cannot change community; everything else still happens."""
    province = generate(2, "county", CORP)
    events = apply_changes(province, 200, seed=3)
    assert len(events) >= 200 and province.validate() == []
    leads = [d for d in province.departments.values() if d.level == "medical_community_lead"]
    assert len(leads) == 1


def test_zero_changes_is_a_no_op() -> None:
    province = generate(5, "small", CORP)
    before = state(province)
    assert apply_changes(province, 0, seed=1) == []
    assert state(province) == before


@pytest.mark.parametrize("scale", ["small"])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(province_seed=st.integers(0, 2**31), change_seed=st.integers(0, 2**31))
def test_any_seeds_keep_the_invariants(scale: str, province_seed: int, change_seed: int) -> None:
    province = generate(province_seed, scale, CORP)
    apply_changes(province, 120, seed=change_seed)
    assert province.validate() == []
