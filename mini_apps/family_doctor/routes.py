"""`/api/family-doctor/...`: teams and their members, residents (list, get), sign, renew, terminate, import.

Thin: arguments in, `mini_apps.family_doctor.service` (and `importer`) out.
"""

from __future__ import annotations

from flask import request

from mini_apps.family_doctor import importer, schemas, service
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
