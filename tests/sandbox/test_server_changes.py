"""Contact changes: applied to the province, delivered as encrypted HTTP pushes, visible in the read APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api, Receiver


def test_changes_are_applied_and_pushed(sb: Api, fresh_receiver: Receiver) -> None:
    resp = sb.admin("POST", "changes", {"count": 12, "seed": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    events = body["events"]
    assert events and body["delivered"] == len(events) == body["count"]
    ids = {e["delivery"]["event_id"] for e in events}
    pushed = fresh_receiver.wait_events(lambda e: e.get("eventId") in ids, count=len(ids))
    by_id = {e["eventId"]: e for e in pushed}
    truth = sb.admin("GET", "truth").json()
    users = {u["userid"] for u in truth["users"]}
    depts = {d["dept_id"] for d in truth["departments"]}
    for event in events:
        plain = by_id[event["delivery"]["event_id"]]
        assert plain["EventType"] == event["event_type"] and plain["CorpId"] == sb.corp_id and plain["timeStamp"]
        if event["event_type"].startswith("org_dept"):
            assert plain["deptId"] == event["dept_ids"]
        else:
            assert plain["userId"] == event["user_ids"]
        if event["diff"]:
            assert plain["diffInfo"] == event["diff"]
    last: dict[str, Any] = {}
    for event in events:  # the final state of each id decides what the read APIs must say now
        for userid in event["user_ids"]:
            last[f"u:{userid}"] = event["event_type"]
        for dept_id in event["dept_ids"]:
            last[f"d:{dept_id}"] = event["event_type"]
    for key, event_type in last.items():
        kind, ident = key.split(":", 1)
        if event_type == "user_leave_org" and kind == "u":
            assert ident not in users
            assert sb.oapi("/topapi/v2/user/get", {"userid": ident})["errcode"] == 60121
        elif event_type == "org_dept_remove" and kind == "d":
            assert int(ident) not in depts
            assert sb.oapi("/topapi/v2/department/get", {"dept_id": int(ident)})["errcode"] == 60003
        elif event_type in ("user_add_org", "user_modify_org") and kind == "u":
            assert ident in users
        elif event_type in ("org_dept_create", "org_dept_modify") and kind == "d":
            assert int(ident) in depts


def test_changes_input_is_validated(sb: Api) -> None:
    for body, field in (({"count": 0}, "count"), ({"count": "3"}, "count"), ({"count": 2, "seed": "x"}, "seed")):
        resp = sb.admin("POST", "changes", body)
        assert resp.status_code == 400 and resp.json()["error"]["field"] == field, resp.text


def test_inbox_search_and_pages(sb: Api) -> None:
    user = sb.admin("GET", "truth").json()["users"][7]
    page = sb.session.get(f"{sb.url}/_sandbox/", params={"q": user["name"]})
    assert page.status_code == 200 and user["userid"] in page.text
    assert "收件箱" in sb.session.get(f"{sb.url}/_sandbox/").text
    assert user["name"] in sb.session.get(f"{sb.url}/_sandbox/", params={"userid": user["userid"]}).text
