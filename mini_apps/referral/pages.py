"""The clinicians' H5 pages at `/h5/apps/referral/` (the catalog's entry URL): 转诊 (my outbox and inbox with
counts by state), 新建转诊 (the form, with ICD-10 search as you type), and one referral (details, timeline and the
actions the API allows the caller).

Static shells like the family-doctor pages: server-rendered, critical CSS inline, the shell's `session.js` and
`dom.js` (sign-in, API errors next to fields, the ID number hint) plus this app's scripts under `static/`
(content-hashed, gzipped), the shell's CSP. No data in the page: everything comes from `/api/referrals/...`, so
scope, masking and auditing stay with the API.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, url_for

from mini_apps.referral import states
from mini_apps.referral.models import ATTACHMENT_KINDS, HALF_DAYS, MODES, PRIORITIES, REASONS
from workbench import h5

bp = h5.PageBlueprint(
    "referral_pages",
    __name__,
    url_prefix="/h5/apps/referral",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)

# Labels as ordered lists (the JSON block's object keys come out sorted).
CLINICAL = (
    ("chief_complaint", "主诉"),
    ("present_illness", "现病史"),
    ("past_history", "既往史"),
    ("allergies", "过敏史"),
    ("physical_exam", "体格检查"),
    ("auxiliary_exams", "辅助检查"),
    ("treatment", "治疗经过"),
    ("medications", "目前用药"),
)
DOWN_CLINICAL = (("rehab_plan", "康复计划"), ("medication_list", "用药清单"), ("follow_up_schedule", "随访安排"))
# A down-referral (转回基层) follows an up- or lateral referral in these states (service checks the same), with
# this reason preselected; the form is opened with `?parent=<id>`, a draft reopened with `?id=<id>`.
DOWN_FROM = ("completed", "closed")
DOWN_REASON = "rehab_chronic"
# Every action a referral page may offer, with its label and whether it needs a reason (退回, 撤销).
ACTIONS = [
    [move.action, move.label, move.needs_reason]
    for move in {**states.DOWN, **states.UP}.values()
    if move.side != states.SYSTEM
]


def _pairs(mapping: dict[str, str]) -> list[list[str]]:
    return [[code, name] for code, name in mapping.items()]


def _page(template: str, script: str, **config: Any) -> Response:
    config = {
        "api": "/api/referrals",
        "familyDoctorApi": "/api/family-doctor",
        "shell": url_for("h5.shell"),
        "list": url_for("referral_pages.home"),
        "create": url_for("referral_pages.new"),
        "referral": url_for("referral_pages.referral", referral_id=0).removesuffix("0"),
        "directions": _pairs(states.DIRECTIONS),
        "modes": _pairs(MODES),
        "priorities": _pairs(PRIORITIES),
        "reasons": _pairs(REASONS),
        "states": _pairs(states.STATES),
        "actions": ACTIONS,
        "clinical": [list(pair) for pair in CLINICAL],
        "downClinical": [list(pair) for pair in DOWN_CLINICAL],
        "downFrom": list(DOWN_FROM),
        "downReason": DOWN_REASON,
        "attachmentKinds": _pairs(ATTACHMENT_KINDS),
        "halfDays": _pairs(HALF_DAYS),
        **config,
    }
    return h5.app_page(bp, f"referral/{template}", script, config)


@bp.get("/")
def home() -> Response:
    """转诊: my outbox and inbox, counts by state as filter chips, direction and priority filters, paging."""
    return _page("home.html", "home.js")


@bp.get("/new")
def new() -> Response:
    """新建转诊: the form (保存草稿 / 提交), attachments uploaded once the referral exists; `?parent=<id>` for a
    down-referral from a completed up-referral (康复计划, 用药清单, 随访安排), `?id=<id>` to edit a draft."""
    return _page("new.html", "new.js")


@bp.get("/referrals/<int:referral_id>")
def referral(referral_id: int) -> Response:
    """One referral: details (masked), clinical summary while shared, attachments, timeline, allowed actions."""
    return _page("referral.html", "referral.js", referralId=referral_id)


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
