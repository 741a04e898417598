"""Approvals: start and read instances (also with the real SDK), decide them, and the bpms events pushed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api, Receiver

FORM = [{"name": "转诊原因", "value": "需上级医院会诊"}, {"name": "患者", "value": "张**"}]


def _start(sb: Api, originator: dict[str, Any], **extra: Any) -> Any:
    body = {
        "processCode": "PROC-REFERRAL-01",
        "originatorUserId": originator["userid"],
        "deptId": originator["dept_id_list"][0],
        "formComponentValues": FORM,
        **extra,
    }
    return sb.api("POST", "/v1.0/workflow/processInstances", body)


def _get(sb: Api, instance_id: str) -> dict[str, Any]:
    resp = sb.api("GET", "/v1.0/workflow/processInstances", params={"processInstanceId": instance_id})
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def _expected_manager(truth: dict[str, Any], user: dict[str, Any]) -> str | None:
    depts = {d["dept_id"]: d for d in truth["departments"]}
    current = depts.get(user["dept_id_list"][0])
    while current is not None:
        for manager in current["dept_manager_userid_list"]:
            if manager != user["userid"]:
                return manager
        current = depts.get(current.get("parent_id"))
    return None


def test_start_decide_and_events(sb: Api, fresh_receiver: Receiver, truth: dict[str, Any]) -> None:
    originator = next(u for u in truth["users"] if u["dept_id_list"] and _expected_manager(truth, u))
    approver = _expected_manager(truth, originator)
    resp = _start(sb, originator)
    assert resp.status_code == 200, resp.text
    instance_id = resp.json()["instanceId"]
    inst = _get(sb, instance_id)
    assert inst["status"] == "RUNNING" and inst["originatorUserId"] == originator["userid"]
    assert [t["userId"] for t in inst["tasks"]] == [approver] and inst["tasks"][0]["status"] == "RUNNING"
    assert inst["formComponentValues"] == FORM

    def mine(kind: str, event_type: str):
        return lambda e: (
            e.get("EventType") == event_type and e.get("processInstanceId") == instance_id and e.get("type") == kind
        )

    (started,) = fresh_receiver.wait_events(mine("start", "bpms_instance_change"))
    assert started["staffId"] == originator["userid"] and started["processCode"] == "PROC-REFERRAL-01"
    (task_started,) = fresh_receiver.wait_events(mine("start", "bpms_task_change"))
    assert task_started["staffId"] == approver and task_started["taskId"] == inst["tasks"][0]["taskId"]

    wrong = sb.admin("POST", f"approvals/{instance_id}/decide", {"userid": originator["userid"], "result": "agree"})
    assert wrong.status_code == 409
    bad = sb.admin("POST", f"approvals/{instance_id}/decide", {"userid": approver, "result": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "result"
    decided = sb.admin(
        "POST", f"approvals/{instance_id}/decide", {"userid": approver, "result": "agree", "remark": "同意"}
    )
    assert decided.status_code == 200, decided.text
    assert [d["outcome"] for d in decided.json()["deliveries"]] == ["delivered", "delivered"]
    (task_done,) = fresh_receiver.wait_events(mine("finish", "bpms_task_change"))
    assert task_done["result"] == "agree" and task_done["remark"] == "同意"
    (finished,) = fresh_receiver.wait_events(mine("finish", "bpms_instance_change"))
    assert finished["result"] == "agree"
    inst = _get(sb, instance_id)
    assert inst["status"] == "COMPLETED" and inst["result"] == "agree" and inst["finishTime"]
    assert inst["tasks"][0]["status"] == "COMPLETED" and inst["tasks"][0]["result"] == "AGREE"
    assert [r["type"] for r in inst["operationRecords"]] == ["START_PROCESS_INSTANCE", "EXECUTE_TASK_NORMAL"]


def test_and_node_needs_everyone_and_refusal_ends_it(sb: Api, truth: dict[str, Any]) -> None:
    originator, first, second, third = truth["users"][10:14]
    approvers = [
        {"actionType": "AND", "userIds": [first["userid"], second["userid"]]},
        {"actionType": "OR", "userIds": [third["userid"]]},
    ]
    instance_id = _start(sb, originator, approvers=approvers).json()["instanceId"]
    sb.admin("POST", f"approvals/{instance_id}/decide", {"userid": first["userid"], "result": "agree"})
    assert _get(sb, instance_id)["status"] == "RUNNING"
    pending = sb.admin("GET", "approvals", params={"userid": second["userid"]}).json()["approvals"]
    assert instance_id in [a["instanceId"] for a in pending]
    page = sb.session.get(f"{sb.url}/_sandbox/", params={"userid": second["userid"]}).text
    assert "待我审批" in page and "需上级医院会诊" in page
    sb.admin("POST", f"approvals/{instance_id}/decide", {"userid": second["userid"], "result": "agree"})
    inst = _get(sb, instance_id)
    assert inst["status"] == "RUNNING" and inst["tasks"][-1]["userId"] == third["userid"]
    sb.admin("POST", f"approvals/{instance_id}/decide", {"userid": third["userid"], "result": "refuse"})
    inst = _get(sb, instance_id)
    assert inst["status"] == "COMPLETED" and inst["result"] == "refuse"


def test_start_validation(sb: Api, truth: dict[str, Any]) -> None:
    user = truth["users"][0]
    assert _start(sb, user, processCode="bogus").json()["code"] == "processCodeError"
    resp = _start(sb, user, originatorUserId="ghost")
    assert resp.status_code == 400 and resp.json()["code"] == "processInstanceInvalidParameter"
    other = next(
        d["dept_id"] for d in truth["departments"] if d["dept_id"] not in user["dept_id_list"] and d["dept_id"] != 1
    )
    assert _start(sb, user, deptId=other).json()["code"] == "processInstanceInvalidParameter"
    missing = sb.api("GET", "/v1.0/workflow/processInstances", params={"processInstanceId": "nope"})
    assert missing.status_code == 400


def test_approvals_with_the_real_sdk(sb: Api, truth: dict[str, Any]) -> None:
    from alibabacloud_dingtalk.workflow_1_0 import models as wf
    from alibabacloud_dingtalk.workflow_1_0.client import Client as WorkflowClient
    from alibabacloud_tea_openapi import models as open_api_models
    from alibabacloud_tea_util import models as util_models

    originator, approver = truth["users"][20], truth["users"][21]
    client = WorkflowClient(open_api_models.Config(protocol="http", region_id="central", endpoint=sb.url[7:]))
    runtime = util_models.RuntimeOptions()
    req = wf.StartProcessInstanceRequest(
        process_code="PROC-LEAVE",
        originator_user_id=originator["userid"],
        dept_id=originator["dept_id_list"][0],
        approvers=[wf.StartProcessInstanceRequestApprovers(action_type="NONE", user_ids=[approver["userid"]])],
        form_component_values=[wf.StartProcessInstanceRequestFormComponentValues(name="事由", value="进修")],
    )
    headers = wf.StartProcessInstanceHeaders(x_acs_dingtalk_access_token=sb.token)
    instance_id = client.start_process_instance_with_options(req, headers, runtime).body.instance_id
    got = client.get_process_instance_with_options(
        wf.GetProcessInstanceRequest(process_instance_id=instance_id),
        wf.GetProcessInstanceHeaders(x_acs_dingtalk_access_token=sb.token),
        runtime,
    ).body.result
    assert (
        got.status == "RUNNING" and got.tasks[0].user_id == approver["userid"] and isinstance(got.tasks[0].task_id, int)
    )
