"""OA approvals (§6): start and read process instances; decide them from the inbox or a test.

Approver nodes run in order; a node is `AND` (everyone must agree), `OR` or `NONE` (one decision settles it).
Without explicit `approvers`, the sandbox routes to the first manager up the originator's department chain —
a stand-in for the console-configured flow. Starting emits `bpms_instance_change`/`bpms_task_change` (start) in
the background; deciding emits the task finish, then the next tasks' start or the instance finish.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.errors import AdminError, ApiError, json_response
from sandbox.inputs import admin_body, admin_str, api_body, int_field
from sandbox.keys import state_of
from sandbox.messages import now_ms

routes = web.RouteTableDef()

_PROCESS_CODE = re.compile(r"^PROC-[A-Za-z0-9_-]+$")
MAX_APPROVER_NODES = 20
MAX_FORM_VALUES = 150
MAX_VALUE = 65535


def iso_minute(ms: int | None) -> str | None:
    """DingTalk's new-API time format, e.g. `2024-05-01T08:30Z` (UTC, minute precision)."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ms / 1000)) if ms else None


@dataclass(slots=True)
class Task:
    task_id: int
    userid: str
    node: int
    created: int
    status: str = "RUNNING"  # RUNNING | COMPLETED | CANCELED
    result: str = "NONE"  # NONE | AGREE | REFUSE
    finished: int | None = None


@dataclass(slots=True)
class Instance:
    id: str
    process_code: str
    title: str
    originator: str
    dept_id: int
    dept_name: str
    form: list[dict[str, Any]]
    nodes: list[tuple[str, list[str]]]
    created: int
    business_id: str
    cc: list[str]
    status: str = "RUNNING"
    result: str = ""
    node: int = 0
    finished: int | None = None
    tasks: list[Task] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "createTime": iso_minute(self.created),
            "finishTime": iso_minute(self.finished),
            "originatorUserId": self.originator,
            "originatorDeptId": str(self.dept_id),
            "originatorDeptName": self.dept_name,
            "status": self.status,
            "result": self.result,
            "businessId": self.business_id,
            "approverUserIds": [u for _, users in self.nodes for u in users],
            "ccUserIds": self.cc,
            "bizAction": "NONE",
            "formComponentValues": self.form,
            "operationRecords": self.records,
            "tasks": [
                {
                    "taskId": t.task_id,
                    "userId": t.userid,
                    "status": t.status,
                    "result": t.result,
                    "createTime": iso_minute(t.created),
                    "finishTime": iso_minute(t.finished),
                    "activityId": f"node_{t.node + 1}",
                    "processInstanceId": self.id,
                    "mobileUrl": f"sandbox://approval/{self.id}/{t.task_id}",
                    "pcUrl": f"sandbox://approval/{self.id}/{t.task_id}",
                }
                for t in self.tasks
            ],
            "attachedProcessInstanceIds": [],
        }

    def running_task(self, userid: str) -> Task | None:
        return next((t for t in self.tasks if t.userid == userid and t.status == "RUNNING"), None)


class ApprovalStore:
    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.next_task = 60000000001


def _event_base(inst: Instance, kind: str) -> dict[str, Any]:
    return {
        "processInstanceId": inst.id,
        "processCode": inst.process_code,
        "type": kind,
        "title": inst.title,
        "createTime": inst.created,
        "bizCategoryId": "",
        "businessId": inst.business_id,
        "url": f"sandbox://approval/{inst.id}",
    }


def instance_event(inst: Instance, kind: str) -> dict[str, Any]:
    data = {**_event_base(inst, kind), "staffId": inst.originator}
    if kind == "finish":
        data.update({"result": inst.result, "finishTime": inst.finished})
    return data


def task_event(inst: Instance, task: Task, kind: str, remark: str = "") -> dict[str, Any]:
    data = {**_event_base(inst, kind), "staffId": task.userid, "taskId": task.task_id}
    if kind == "finish":
        data.update({"result": task.result.lower(), "remark": remark, "finishTime": task.finished})
    return data


def _open_node(store: ApprovalStore, inst: Instance) -> list[Task]:
    new = []
    for userid in inst.nodes[inst.node][1]:
        new.append(Task(store.next_task, userid, inst.node, now_ms()))
        store.next_task += 1
    inst.tasks.extend(new)
    return new


def _default_approver(province: Any, originator: str, dept_id: int) -> str | None:
    for current in province.parent_chain(dept_id):
        dept = province.departments.get(current)
        for manager in dept.manager_userids if dept else []:
            if manager != originator and manager in province.users:
                return manager
    return None


def _parse_nodes(province: Any, raw: Any) -> list[tuple[str, list[str]]]:
    if not isinstance(raw, list) or len(raw) > MAX_APPROVER_NODES:
        raise ApiError(400, "invalidParameter", f"approvers必须是不超过{MAX_APPROVER_NODES}项的数组")
    nodes = []
    for item in raw:
        users = item.get("userIds") if isinstance(item, dict) else None
        action = (item.get("actionType") or "NONE") if isinstance(item, dict) else None
        if action not in ("AND", "OR", "NONE") or not isinstance(users, list) or not users:
            raise ApiError(400, "invalidParameter", "approvers项需要actionType(AND/OR/NONE)和userIds")
        if any(u not in province.users for u in users):
            raise ApiError(400, "processInstanceInvalidParameter", "审批人不存在")
        nodes.append((action, list(dict.fromkeys(users))))
    return nodes


def _parse_form(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_FORM_VALUES:
        raise ApiError(400, "invalidParameter", f"formComponentValues必须是不超过{MAX_FORM_VALUES}项的数组")
    form = []
    for item in raw:
        if not isinstance(item, dict) or not item.get("name") or not isinstance(item.get("value"), str):
            raise ApiError(400, "formConverterError", "表单项需要name和字符串value")
        if len(item["value"]) > MAX_VALUE:
            raise ApiError(400, "formConverterError", f"表单项 {item['name']} 超过{MAX_VALUE}字符")
        form.append(
            {
                k: item.get(k)
                for k in ("id", "name", "value", "extValue", "componentType", "bizAlias")
                if item.get(k) is not None
            }
        )
    return form


@routes.post("/v1.0/workflow/processInstances")
async def start(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    code = body.get("processCode")
    if not code:
        raise ApiError(400, "invalidParameter", "processCode不能为空")
    if not isinstance(code, str) or not _PROCESS_CODE.match(code):
        raise ApiError(400, "processCodeError", "processCode不存在（应为控制台模板的 PROC-… 编码）")
    form = _parse_form(body.get("formComponentValues"))
    with state.lock:
        province = state.province
        originator = province.users.get(body.get("originatorUserId") or "")
        if originator is None:
            raise ApiError(400, "processInstanceInvalidParameter", "发起人不存在")
        dept_id = int_field(body.get("deptId"))
        if dept_id == -1:
            dept_id = 1
        if dept_id is None:
            if not body.get("approvers"):
                raise ApiError(400, "invalidParameter", "deptId不能为空")
            dept_id = originator.dept_ids[0] if originator.dept_ids else 1
        if dept_id not in province.departments:
            raise ApiError(400, "processInstanceInvalidParameter", "部门不存在")
        if dept_id != 1 and dept_id not in originator.dept_ids:
            raise ApiError(400, "processInstanceInvalidParameter", "发起人不在该部门")
        if body.get("approvers"):
            nodes = _parse_nodes(province, body["approvers"])
        else:
            approver = _default_approver(province, originator.userid, dept_id)
            if approver is None:
                raise ApiError(400, "targetSelectApproverMissing", "找不到审批人")
            nodes = [("NONE", [approver])]
        cc = [u for u in body.get("ccList") or [] if isinstance(u, str) and u in province.users]
        inst = Instance(
            secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"),
            code,
            f"{originator.name}提交的审批",
            originator.userid,
            dept_id,
            province.departments[dept_id].name,
            form,
            nodes,
            now_ms(),
            time.strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(1000000):06d}",
            cc,
        )
    inst.records.append(
        {
            "userId": inst.originator,
            "date": iso_minute(inst.created),
            "type": "START_PROCESS_INSTANCE",
            "result": "NONE",
            "showName": "发起审批",
        }
    )
    tasks = _open_node(state.approvals, inst)
    state.approvals.instances[inst.id] = inst
    state.events.publish_later("bpms_instance_change", instance_event(inst, "start"))
    for task in tasks:
        state.events.publish_later("bpms_task_change", task_event(inst, task, "start"))
    return json_response({"instanceId": inst.id})


@routes.get("/v1.0/workflow/processInstances")
async def get(request: web.Request) -> web.Response:
    state = state_of(request)
    instance_id = request.query.get("processInstanceId", "")
    if not instance_id:
        raise ApiError(400, "invalidParameter", "processInstanceId不能为空")
    inst = state.approvals.instances.get(instance_id)
    if inst is None:
        raise ApiError(400, "invalidParameter", "审批实例不存在")
    return json_response({"success": True, "result": inst.view()})


def decide(state: Any, inst: Instance, task: Task, result: str, remark: str) -> list[tuple[str, dict[str, Any]]]:
    """Finish one task and advance the instance; returns the events to deliver, in order."""
    now = now_ms()
    task.status, task.result, task.finished = "COMPLETED", result.upper(), now
    inst.records.append(
        {
            "userId": task.userid,
            "date": iso_minute(now),
            "type": "EXECUTE_TASK_NORMAL",
            "result": result.upper(),
            "remark": remark,
            "showName": "审批人",
        }
    )
    events = [("bpms_task_change", task_event(inst, task, "finish", remark))]
    node_tasks = [t for t in inst.tasks if t.node == inst.node]
    action = inst.nodes[inst.node][0]
    if result == "agree" and action == "AND" and any(t.status == "RUNNING" for t in node_tasks):
        return events
    for other in node_tasks:
        if other.status == "RUNNING":
            other.status, other.finished = "CANCELED", now
    if result == "agree" and inst.node + 1 < len(inst.nodes):
        inst.node += 1
        events += [("bpms_task_change", task_event(inst, t, "start")) for t in _open_node(state.approvals, inst)]
        return events
    inst.status, inst.result, inst.finished = "COMPLETED", result, now
    events.append(("bpms_instance_change", instance_event(inst, "finish")))
    return events


@routes.post("/_sandbox/approvals/{instance_id}/decide")
async def decide_endpoint(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await admin_body(request)
    inst = state.approvals.instances.get(request.match_info["instance_id"])
    if inst is None:
        raise AdminError("审批实例不存在", field="instanceId", code="not_found", status=404)
    userid = admin_str(body, "userid")
    result = admin_str(body, "result")
    if result not in ("agree", "refuse"):
        raise AdminError("result 只能是 agree 或 refuse", field="result")
    remark = admin_str(body, "remark", required=False, default="") or ""
    task = inst.running_task(userid)
    if task is None:
        raise AdminError("该用户在此审批中没有待处理的任务", field="userid", code="no_task", status=409)
    deliveries = []
    for event_type, data in decide(state, inst, task, result, remark):
        deliveries.append((await state.events.publish(event_type, data)).view())
    return json_response({"instanceId": inst.id, "instance": inst.view(), "deliveries": deliveries})


@routes.get("/_sandbox/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    """Instances, optionally only those waiting for `userid` (the inbox's 待我审批)."""
    state = state_of(request)
    userid = request.query.get("userid") or None
    found = [
        {"instanceId": i.id, "processCode": i.process_code, **i.view()}
        for i in state.approvals.instances.values()
        if userid is None or i.running_task(userid) is not None or i.originator == userid
    ]
    return json_response({"approvals": found})
