"""`/api/family-doctor/...`: teams and their members, residents (list, get, reveal with a reason), sign, renew,
terminate, import; a team's chat; follow-ups; signing figures and service populations.

Thin: arguments in, `mini_apps.family_doctor.service` (and `importer`, `chats`, `reminders`, `figures`) out.
"""

from __future__ import annotations

from flask import request

from mini_apps.family_doctor import chats, figures, importer, reminders, schemas, service
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_role
from workbench.errors import ApiError

MAX_UPLOAD = 20 * 1024 * 1024  # 20 MB: a 50,000-row export is about 7 MB as CSV

bp = Blueprint(
    "family_doctor", __name__, url_prefix="/api/family-doctor", description="家庭医生签约: teams, residents, contracts"
)


@bp.route("/teams", methods=["GET"])
@login_required
@bp.response(200, schemas.TeamListSchema)
def list_teams() -> dict:
    """Teams the caller belongs to, and those of institutions they administer."""
    return service.list_teams(current_principal())


@bp.route("/teams", methods=["POST"])
@require_role("admin", "institution_admin")
@bp.arguments(schemas.TeamInputSchema)
@bp.response(201, schemas.TeamSchema)
def create_team(body: dict) -> dict:
    return service.create_team(current_principal(), body)


@bp.route("/teams/<int:team_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.TeamSchema)
def get_team(team_id: int) -> dict:
    return service.get_team(current_principal(), team_id)


@bp.route("/teams/<int:team_id>/members", methods=["POST"])
@require_role("admin", "institution_admin")
@bp.arguments(schemas.MemberInputSchema)
@bp.response(200, schemas.TeamSchema)
def add_member(body: dict, team_id: int) -> dict:
    """Add an org member to the team (or change their role)."""
    return service.add_member(current_principal(), team_id, body)


@bp.route("/teams/<int:team_id>/members/<userid>", methods=["DELETE"])
@require_role("admin", "institution_admin")
@bp.response(200, schemas.TeamSchema)
def remove_member(team_id: int, userid: str) -> dict:
    return service.remove_member(current_principal(), team_id, userid)


@bp.route("/residents", methods=["GET"])
@login_required
@bp.arguments(schemas.ResidentQuerySchema, location="query")
@bp.response(200, schemas.ResidentListSchema)
def list_residents(query: dict) -> dict:
    """The caller's signed residents (ID numbers and phones masked); every list is audited."""
    return service.list_residents(current_principal(), query)


@bp.route("/residents/<int:resident_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.ResidentDetailSchema)
def get_resident(resident_id: int) -> dict:
    return service.get_resident(current_principal(), resident_id)


@bp.route("/contracts", methods=["POST"])
@login_required
@bp.arguments(schemas.SignSchema)
@bp.response(201, schemas.ResidentDetailSchema)
def sign(body: dict) -> dict:
    """Sign a resident to a team the caller acts for (the resident is created on first signing)."""
    return service.sign(current_principal(), body)


@bp.route("/contracts/<int:contract_id>/renew", methods=["POST"])
@login_required
@bp.arguments(schemas.RenewSchema)
@bp.response(201, schemas.ContractSchema)
def renew(body: dict, contract_id: int) -> dict:
    return service.renew(current_principal(), contract_id, body)


@bp.route("/contracts/<int:contract_id>/terminate", methods=["POST"])
@login_required
@bp.arguments(schemas.TerminateSchema)
@bp.response(200, schemas.ContractSchema)
def terminate(body: dict, contract_id: int) -> dict:
    return service.terminate(current_principal(), contract_id, body)


@bp.route("/imports", methods=["POST"])
@login_required
@bp.arguments(schemas.ImportQuerySchema, location="query")
@bp.response(200, schemas.ImportReportSchema)
def import_file(query: dict) -> dict:
    """Import residents and contracts from the public-health export (multipart `file`: .csv or .xlsx, ≤ 20 MB);
    `?dry_run=true` reports without writing. The column set is documented in `mini_apps.family_doctor.importer`."""
    if request.content_length is not None and request.content_length > MAX_UPLOAD:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ApiError("validation_error", "请上传文件（multipart 字段 file）", status=422, field="file")
    content = upload.stream.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    return importer.run(current_principal(), upload.filename, content, dry_run=query["dry_run"])


@bp.route("/residents/<int:resident_id>/identity", methods=["POST"])
@login_required
@bp.arguments(schemas.RevealInputSchema)
@bp.response(200, schemas.RevealSchema)
def reveal_identity(body: dict, resident_id: int):
    """The resident's full ID number and phone, for their team and institution admins, with a reason that is
    kept in the audit log. Never cached."""
    return service.reveal_identity(current_principal(), resident_id, body["reason"]), 200, {"Cache-Control": "no-store"}


@bp.route("/residents/<int:resident_id>/messages", methods=["POST"])
@login_required
@bp.arguments(schemas.MessageInputSchema)
@bp.response(202, schemas.MessageQueuedSchema)
def message_resident(body: dict, resident_id: int) -> dict:
    """A one-to-one robot message from the resident's team to the resident's DingTalk account."""
    return service.message_resident(current_principal(), resident_id, body["text"])


@bp.route("/figures", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(schemas.FiguresQuerySchema, location="query")
@bp.response(200, schemas.FiguresSchema)
def signing_figures(query: dict) -> dict:
    """Signing coverage (overall and per key population), renewal rate and overdue follow-ups per institution and
    every node above it, within the caller's scope (`node_id`: one subtree of it)."""
    return figures.figures_view(current_principal(), query)


@bp.route("/populations", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(schemas.PopulationQuerySchema, location="query")
@bp.response(200, schemas.PopulationListSchema)
def list_populations(query: dict) -> dict:
    return figures.list_populations(current_principal(), query)


@bp.route("/populations", methods=["PUT"])
@require_role(*figures.POPULATION_EDITORS)
@bp.arguments(schemas.PopulationInputSchema)
@bp.response(200, schemas.PopulationSchema)
def set_population(body: dict) -> dict:
    """Set an institution's service population for a year (the denominator of the coverage figures)."""
    return figures.set_population(current_principal(), body)


@bp.route("/teams/<int:team_id>/chat", methods=["GET"])
@login_required
@bp.response(200, schemas.TeamChatSchema)
def get_team_chat(team_id: int) -> dict:
    """The team's DingTalk scene group: its ids, owner, member counts and the last sync's outcome."""
    return chats.chat_view(current_principal(), team_id)


@bp.route("/teams/<int:team_id>/chat/sync", methods=["POST"])
@require_role("admin", "institution_admin")
@bp.response(202, schemas.TeamChatSyncSchema)
def sync_team_chat(team_id: int) -> dict:
    """Queue a sync of the team's group now (also retries residents' accounts DingTalk refused before)."""
    return chats.request_sync(current_principal(), team_id)


@bp.route("/residents/<int:resident_id>/follow-ups", methods=["GET"])
@login_required
@bp.response(200, schemas.FollowUpListSchema)
def list_follow_ups(resident_id: int) -> dict:
    """The resident's chronic-disease follow-ups (open first); audited like opening the resident."""
    return reminders.list_follow_ups(current_principal(), resident_id)


@bp.route("/follow-ups/<int:follow_up_id>/done", methods=["POST"])
@login_required
@bp.arguments(schemas.FollowUpDoneInputSchema)
@bp.response(200, schemas.FollowUpDoneSchema)
def complete_follow_up(body: dict, follow_up_id: int) -> dict:
    """Record a follow-up as done (by the resident's team or an admin above it); the next is due a quarter later."""
    return reminders.complete_follow_up(current_principal(), follow_up_id, body)
