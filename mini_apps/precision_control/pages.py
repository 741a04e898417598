"""The doctors' H5 pages at `/h5/apps/precision_control/` (the catalog's entry URL): 我的任务 (the caller's tasks
with counts as filter chips — 待接收, 已接收, 处理中, 即将到期, 已逾期, 已完成 — and a campaign filter) and one task
(`/tasks/<id>`: the person, the campaign's result form built from its task template, the steps the state allows —
接收, 开始处理, 提交结果, 无法联系, 转出, and 关闭 for the county — and the history).

Static shells like the referral and family-doctor pages: server-rendered, critical CSS inline, the shell's
`session.js` and `dom.js` (sign-in, API errors next to fields) plus this app's scripts under `static/`
(content-hashed, gzipped), the shell's CSP. No data in the page: everything comes from `/api/precision-control/...`,
so who sees a person in the clear, masking and auditing stay with the API (`tasks.get_task`). The dashboard's pages
(`dashboard.py`) share this blueprint's folders.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, url_for

from mini_apps.precision_control.models import FINISHED_STATES, OPEN_STATES, PRIORITIES, TASK_KINDS, TASK_STATES
from workbench import h5

bp = h5.PageBlueprint(
    "precision_control_pages",
    __name__,
    url_prefix="/h5/apps/precision_control",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)

API = "/api/precision-control"
DASHBOARD = "/h5/apps/precision_control/dashboard/"  # the index dashboard (dashboard.py), for administrators
# What the result form offers per field type (the template's `type`): the page builds the inputs from these.
FIELD_TYPES = ("choice", "number", "text", "date", "bool")
# Task events as the history names them (dispatch and the manual steps of `dispatch`, the doctors' of `tasks`).
EVENT_NAMES = {
    "dispatch": "分派",
    "assign": "人工分派",
    "reassign": "改派",
    "refuse": "退回县级",
    "accept": "接收",
    "start": "开始处理",
    "complete": "提交结果",
    "unreachable": "无法联系",
    "transfer": "转出",
    "close": "关闭",
    "escalate": "逾期督办",
}


def _pairs(mapping: dict[str, str]) -> list[list[str]]:
    # Lists, not objects: the JSON block's object keys come out sorted and the order matters here.
    return [[code, name] for code, name in mapping.items()]


def _page(template: str, script: str, **config: Any) -> Response:
    config = {
        "api": API,
        "shell": url_for("h5.shell"),
        "list": url_for("precision_control_pages.tasks"),
        "task": url_for("precision_control_pages.task", task_id=0).removesuffix("0"),
        "dashboard": DASHBOARD,
        "states": _pairs(TASK_STATES),
        "openStates": list(OPEN_STATES),
        "finishedStates": list(FINISHED_STATES),
        "priorities": _pairs(PRIORITIES),
        "kinds": _pairs(TASK_KINDS),
        "events": _pairs(EVENT_NAMES),
        "fieldTypes": list(FIELD_TYPES),
        **config,
    }
    return h5.app_page(bp, f"precision_control/{template}", script, config)


@bp.get("/")
def tasks() -> Response:
    """我的任务: the caller's tasks, counts by state and due as filter chips, a campaign filter, paging; for
    administrators the institutions' tasks too (a toggle) and a link to the dashboard."""
    return _page("tasks.html", "tasks.js")


@bp.get("/tasks/<int:task_id>")
def task(task_id: int) -> Response:
    """One task: the person (in the clear for who works it), the result form, the steps the state allows, history."""
    return _page("task.html", "task.js", taskId=task_id)


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
