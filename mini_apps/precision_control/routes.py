"""`/api/precision-control/...`: campaigns, rosters, service areas, dispatch. Thin: arguments in, service out."""

from __future__ import annotations

from flask import request

from mini_apps.precision_control import areas, dispatch, roster, schemas, service, tasks
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_role
from workbench.errors import ApiError

bp = Blueprint(
    "precision_control",
    __name__,
    url_prefix="/api/precision-control",
    description="精密智控: targeted-population control",
)


# -- campaigns --------------------------------------------------------------------------------------------------


@bp.route("/campaigns", methods=["POST"])
@login_required
@require_role("admin")
@bp.arguments(schemas.CampaignInputSchema)
@bp.response(201, schemas.CampaignSchema)
def create_campaign(body: dict) -> dict:
    """A draft campaign for the subtree of a commission or bureau the caller administers."""
    return service.create_campaign(current_principal(), body)


@bp.route("/campaigns", methods=["GET"])
@login_required
@bp.arguments(schemas.CampaignQuerySchema, location="query")
@bp.response(200, schemas.CampaignListSchema)
def list_campaigns(query: dict) -> dict:
    """Campaigns owned inside the caller's subtrees or above them, newest first."""
    return service.list_campaigns(current_principal(), query)


@bp.route("/campaigns/<int:campaign_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.CampaignSchema)
def get_campaign(campaign_id: int) -> dict:
    return service.get_campaign(current_principal(), campaign_id)


@bp.route("/campaigns/<int:campaign_id>", methods=["PATCH"])
@login_required
@bp.arguments(schemas.CampaignPatchSchema)
@bp.response(200, schemas.CampaignSchema)
def update_campaign(body: dict, campaign_id: int) -> dict:
    """Edit the campaign and/or move it draft → active → ended; activating dispatches the draft's roster."""
    return service.update_campaign(current_principal(), campaign_id, body)


# -- roster intake ----------------------------------------------------------------------------------------------


@bp.route("/campaigns/<int:campaign_id>/roster", methods=["POST"])
@login_required
@bp.response(200, schemas.RosterImportReportSchema)
def upload_roster(campaign_id: int) -> dict:
    """Take in a roster file (multipart `file`: .csv or .xlsx); the columns are documented in
    `mini_apps.precision_control.roster`. Bad rows are reported, good rows added, duplicates counted."""
    if request.content_length is not None and request.content_length > roster.MAX_UPLOAD:
        raise ApiError("payload_too_large", "文件不能超过 200 MB", status=413, field="file")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ApiError("validation_error", "请上传文件（multipart 字段 file）", status=422, field="file")
    content = upload.stream.read(roster.MAX_UPLOAD + 1)
    if len(content) > roster.MAX_UPLOAD:
        raise ApiError("payload_too_large", "文件不能超过 200 MB", status=413, field="file")
    return roster.import_file(current_principal(), campaign_id, upload.filename, content)


@bp.route("/campaigns/<int:campaign_id>/roster/items", methods=["POST"])
@login_required
@bp.arguments(schemas.RosterPushSchema)
@bp.response(200, schemas.RosterImportReportSchema)
def push_roster(body: dict, campaign_id: int) -> dict:
    """An API push of up to 5,000 persons, checked and reported like a file's rows."""
    return roster.import_items(current_principal(), campaign_id, body["items"])


@bp.route("/campaigns/<int:campaign_id>/roster/from-family-doctor", methods=["POST"])
@login_required
@bp.arguments(schemas.FamilyDoctorRosterSchema)
@bp.response(200, schemas.RosterImportReportSchema)
def roster_from_family_doctor(body: dict, campaign_id: int) -> dict:
    """The roster from the platform's signed residents in the campaign's subtree with a key-population tag (and,
    optionally, an overdue follow-up)."""
    return roster.import_from_family_doctor(current_principal(), campaign_id, body)


@bp.route("/campaigns/<int:campaign_id>/imports", methods=["GET"])
@login_required
@bp.response(200, schemas.RosterImportListSchema)
def list_imports(campaign_id: int) -> dict:
    return roster.list_imports(current_principal(), campaign_id)


@bp.route("/campaigns/<int:campaign_id>/imports/<int:import_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.RosterImportReportSchema)
def get_import(campaign_id: int, import_id: int) -> dict:
    """One import with its per-row report."""
    return roster.get_import(current_principal(), campaign_id, import_id)


# -- service areas, dispatch rules, manual dispatch (mini_apps.precision_control.areas / .dispatch) --------------
# Imported here so this block stays one appended edit beside the campaign routes above (the lead may hoist it).


@bp.route("/service-areas", methods=["PUT"])
@login_required
@require_role("admin", "institution_admin")
@bp.arguments(schemas.ServiceAreaInputSchema)
@bp.response(200, schemas.ServiceAreaSchema)
def put_service_area(body: dict) -> dict:
    """Map a division code to the unit that answers for it (who may map what: `areas` module docstring)."""
    return areas.set_areas(db.session(), current_principal(), [body])["items"][0]


@bp.route("/service-areas/bulk", methods=["PUT"])
@login_required
@require_role("admin", "institution_admin")
@bp.arguments(schemas.ServiceAreaBulkSchema)
@bp.response(200, schemas.ServiceAreaSetResultSchema)
def put_service_areas(body: dict) -> dict:
    """Up to 5,000 mappings, all or none; a bad one is a 422 naming `items.<n>.<field>`."""
    return areas.set_areas(db.session(), current_principal(), body["items"])


@bp.route("/service-areas", methods=["GET"])
@login_required
@bp.arguments(schemas.ServiceAreaQuerySchema, location="query")
@bp.response(200, schemas.ServiceAreaListSchema)
def list_service_areas(query: dict) -> dict:
    return areas.list_areas(db.session(), current_principal(), query)


@bp.route("/service-areas/<division_code>", methods=["DELETE"])
@login_required
@bp.response(204)
def delete_service_area(division_code: str) -> None:
    areas.delete_area(db.session(), current_principal(), division_code)


@bp.route("/campaigns/<int:campaign_id>/dispatch-rules", methods=["PUT"])
@login_required
@require_role("admin")
@bp.arguments(schemas.DispatchRuleInputSchema)
@bp.response(200, schemas.DispatchRuleSchema)
def put_dispatch_rule(body: dict, campaign_id: int) -> dict:
    """The campaign's own route for a division prefix (to a unit, a team or a named doctor), before the areas."""
    return areas.set_rule(db.session(), current_principal(), campaign_id, body)


@bp.route("/campaigns/<int:campaign_id>/dispatch-rules", methods=["GET"])
@login_required
@bp.response(200, schemas.DispatchRuleListSchema)
def list_dispatch_rules(campaign_id: int) -> dict:
    return areas.list_rules(db.session(), current_principal(), campaign_id)


@bp.route("/campaigns/<int:campaign_id>/dispatch-rules/<division_prefix>", methods=["DELETE"])
@login_required
@bp.response(204)
def delete_dispatch_rule(campaign_id: int, division_prefix: str) -> None:
    areas.delete_rule(db.session(), current_principal(), campaign_id, division_prefix)


@bp.route("/campaigns/<int:campaign_id>/queue", methods=["GET"])
@login_required
@bp.arguments(schemas.QueueQuerySchema, location="query")
@bp.response(200, schemas.QueueSchema)
def county_queue(query: dict, campaign_id: int) -> dict:
    """The campaign's queued (unmatched or refused) tasks in the caller's counties, masked; audited."""
    return dispatch.county_queue(db.session(), current_principal(), campaign_id, query)


@bp.route("/tasks/<int:task_id>/assign", methods=["POST"])
@login_required
@require_role("admin")
@bp.arguments(schemas.TaskAssignSchema)
@bp.response(200, schemas.ControlTaskSchema)
def assign_task(body: dict, task_id: int) -> dict:
    """A county administrator assigns a queued task or re-assigns an assigned one, with a reason (recorded)."""
    return dispatch.assign_task(db.session(), current_principal(), task_id, body)


@bp.route("/tasks/<int:task_id>/refuse", methods=["POST"])
@login_required
@bp.arguments(schemas.TaskRefuseSchema)
@bp.response(200, schemas.ControlTaskSchema)
def refuse_task(body: dict, task_id: int) -> dict:
    """The assigned institution sends the task back to the county queue, with a reason (recorded)."""
    return dispatch.refuse_task(db.session(), current_principal(), task_id, body)


# -- the doctors' tasks ---------------------------------------------------------------------------------------------


@bp.route("/tasks", methods=["GET"])
@login_required
@bp.arguments(schemas.TaskQuerySchema, location="query")
@bp.response(200, schemas.TaskListSchema)
def list_tasks(query: dict) -> dict:
    """The caller's tasks (and those of the institutions they oversee), masked, with counts; audited."""
    return tasks.list_tasks(db.session(), current_principal(), query)


@bp.route("/tasks/<int:task_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.TaskDetailSchema)
def get_task(task_id: int) -> dict:
    """One task, its form and history; the person in the clear only for those who work it; audited."""
    return tasks.get_task(db.session(), current_principal(), task_id)


@bp.route("/tasks/<int:task_id>/accept", methods=["POST"])
@login_required
@bp.response(200, schemas.ControlTaskSchema)
def accept_task(task_id: int) -> dict:
    return tasks.accept_task(db.session(), current_principal(), task_id)


@bp.route("/tasks/<int:task_id>/start", methods=["POST"])
@login_required
@bp.response(200, schemas.ControlTaskSchema)
def start_task(task_id: int) -> dict:
    return tasks.start_task(db.session(), current_principal(), task_id)


@bp.route("/tasks/<int:task_id>/complete", methods=["POST"])
@login_required
@bp.arguments(schemas.TaskCompleteSchema)
@bp.response(200, schemas.ControlTaskSchema)
def complete_task(body: dict, task_id: int) -> dict:
    """The result form; 422 names `result.<code>` when a value does not fit the campaign's template."""
    return tasks.complete_task(db.session(), current_principal(), task_id, body)


@bp.route("/tasks/<int:task_id>/unreachable", methods=["POST"])
@login_required
@bp.arguments(schemas.TaskUnreachableSchema)
@bp.response(200, schemas.ControlTaskSchema)
def mark_unreachable(body: dict, task_id: int) -> dict:
    return tasks.mark_unreachable(db.session(), current_principal(), task_id, body)


@bp.route("/tasks/<int:task_id>/transfer", methods=["POST"])
@login_required
@bp.arguments(schemas.TaskTransferSchema)
@bp.response(200, schemas.ControlTaskSchema)
def transfer_task(body: dict, task_id: int) -> dict:
    """The person has left the campaign's area: handed over outside it (terminal)."""
    return tasks.transfer_task(db.session(), current_principal(), task_id, body)


@bp.route("/tasks/<int:task_id>/close", methods=["POST"])
@login_required
@bp.arguments(schemas.TaskCloseSchema)
@bp.response(200, schemas.ControlTaskSchema)
def close_task(body: dict, task_id: int) -> dict:
    """The county's or the campaign's administrators close an open task, with a reason."""
    return tasks.close_task(db.session(), current_principal(), task_id, body)
