"""Contacts: paging reassembles exactly the truth, every reply in DingTalk's shape, the real error codes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api


def _all_pages(sb: Api, path: str, dept_id: int, size: int, **extra: Any) -> list[dict[str, Any]]:
    items, cursor = [], 0
    while True:
        reply = sb.oapi(path, {"dept_id": dept_id, "cursor": cursor, "size": size, **extra})
        assert reply["errcode"] == 0, reply
        result = reply["result"]
        items.extend(result["list"])
        if not result["has_more"]:
            assert "next_cursor" not in result or result["next_cursor"] is None
            return items
        cursor = result["next_cursor"]


def test_department_tree_matches_truth(sb: Api, truth: dict[str, Any]) -> None:
    by_id = {d["dept_id"]: d for d in truth["departments"]}
    seen, queue = set(), [1]
    while queue:
        dept_id = queue.pop()
        seen.add(dept_id)
        children = sb.oapi("/topapi/v2/department/listsub", {"dept_id": dept_id})["result"]
        ids = sb.oapi("/topapi/v2/department/listsubid", {"dept_id": dept_id})["result"]["dept_id_list"]
        assert [c["dept_id"] for c in children] == ids
        for child in children:
            assert "order" not in child and "_level" not in child and "level" not in child
            assert child["parent_id"] == dept_id and child["name"] == by_id[child["dept_id"]]["name"]
        queue.extend(ids)
    assert seen == set(by_id)
    some = sorted(by_id)[:: max(1, len(by_id) // 15)]
    for dept_id in some:
        got = sb.oapi("/topapi/v2/department/get", {"dept_id": dept_id})["result"]
        expected = {k: v for k, v in by_id[dept_id].items() if k != "_level"}
        assert got == expected
        chain = sb.oapi("/topapi/v2/department/listparentbydept", {"dept_id": dept_id})["result"]["parent_id_list"]
        assert chain[0] == dept_id and chain[-1] == 1


def test_user_paging_reassembles_truth_for_every_department(sb: Api, truth: dict[str, Any]) -> None:
    users = {u["userid"]: u for u in truth["users"]}
    expected: dict[int, set[str]] = {d["dept_id"]: set() for d in truth["departments"]}
    for user in truth["users"]:
        for dept_id in user["dept_id_list"]:
            expected[dept_id].add(user["userid"])
    for dept_id, members in expected.items():
        listed = _all_pages(sb, "/topapi/v2/user/list", dept_id, 100)
        ids = [u["userid"] for u in listed]
        assert len(ids) == len(set(ids)) and set(ids) == members, dept_id
        assert sb.oapi("/topapi/user/listid", {"dept_id": dept_id})["result"]["userid_list"] == ids
        for item in listed:
            full = users[item["userid"]]
            assert dept_id in item["dept_id_list"]
            assert item["name"] == full["name"] and item["mobile"] == full["mobile"]
            leader = {x["dept_id"]: x["leader"] for x in full["leader_in_dept"]}[dept_id]
            order = {x["dept_id"]: x["order"] for x in full["dept_order_list"]}[dept_id]
            assert item["leader"] == leader and item["dept_order"] == order
    biggest = max(expected, key=lambda d: len(expected[d]))
    small_pages = _all_pages(sb, "/topapi/user/listsimple", biggest, 7)
    assert {u["userid"] for u in small_pages} == expected[biggest]
    entry = [u["userid"] for u in _all_pages(sb, "/topapi/v2/user/list", biggest, 50, order_field="entry_asc")]
    hired = [users[u].get("hired_date", 0) for u in entry]
    assert hired == sorted(hired)


def test_user_replies_carry_dingtalk_fields_and_never_the_level(sb: Api, truth: dict[str, Any]) -> None:
    user = truth["users"][len(truth["users"]) // 2]
    got = sb.oapi("/topapi/v2/user/get", {"userid": user["userid"]})["result"]
    assert got == user
    for key in ("userid", "unionid", "dept_id_list", "dept_order_list", "leader_in_dept", "role_list", "active"):
        assert key in got
    assert "level" not in json.dumps(got)
    by_mobile = sb.oapi("/topapi/v2/user/getbymobile", {"mobile": user["mobile"]})
    assert by_mobile["result"]["userid"] == user["userid"]
    by_union = sb.oapi("/topapi/user/getbyunionid", {"unionid": user["unionid"]})
    assert by_union["result"]["userid"] == user["userid"]
    parents = sb.oapi("/topapi/v2/department/listparentbyuser", {"userid": user["userid"]})["result"]["parent_list"]
    assert len(parents) == len(user["dept_id_list"])
    count = sb.oapi("/topapi/user/count", {"only_active": False})["result"]["count"]
    assert count == len(truth["users"])


def test_contact_error_codes(sb: Api) -> None:
    assert sb.oapi("/topapi/v2/department/get", {"dept_id": 987654321})["errcode"] == 60003
    assert sb.oapi("/topapi/v2/department/listsub", {"dept_id": "abc"})["errcode"] == 400002
    assert sb.oapi("/topapi/v2/user/get", {"userid": "no-such-user"})["errcode"] == 60121
    assert sb.oapi("/topapi/v2/user/getbymobile", {"mobile": "12345"})["errcode"] == 40104
    assert sb.oapi("/topapi/v2/user/getbymobile", {"mobile": "19999999999"})["errcode"] == 60121
    assert sb.oapi("/topapi/v2/user/list", {"dept_id": 1, "cursor": 0, "size": 101})["errcode"] == 40035
    assert sb.oapi("/topapi/v2/user/list", {"dept_id": 1, "cursor": 0})["errcode"] == 40035
    assert sb.oapi("/topapi/no/such/api", {})["errcode"] == 22


def test_truth_marks_levels_for_tests_only(truth: dict[str, Any]) -> None:
    levels = {d["_level"] for d in truth["departments"]}
    assert "province_commission" in levels and "internal_department" in levels
