"""`/api/supervision/reports`: manual indicator reports, their evidence, and reading them.

Thin: arguments in, `supervision.reports` out (who may report, approve and read lives there).
"""

from __future__ import annotations

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from supervision import feed, reports
from supervision import report_schemas as schemas
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required
from workbench.errors import ApiError

bp = Blueprint(
    "supervision_reports",
    __name__,
    url_prefix="/api/supervision",
    description="监管在线: 手工填报（审批后计入）与佐证材料",
)

MAX_BODY = 1024 * 1024  # 200 items are a few kilobytes
NO_STORE = {"Cache-Control": "no-store"}


@bp.route("/reports", methods=["POST"])
@login_required
@bp.doc(requestBody={"content": {"application/json": {"schema": schemas.ReportInputSchema}}})
@bp.response(201, schemas.ReportSchema)
def create_report():
    """Report manual or mixed indicators of the caller's unit for a period; it counts once one of the unit's
    administrators approves it (a card from the bot). 422 `{"error": {..., "errors": [{"index", "field",
    "message"}]}}` names every problem; 409 while a report of the same indicator and period is pending."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError("payload_too_large", "请求体过大", status=413, field="items")
    request.max_content_length = MAX_BODY
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ApiError("payload_too_large", "请求体过大", status=413, field="items") from None
    # Parsed with exact decimals, as the feed does: the same item checks refuse floats' rounding errors.
    body = feed.parse_body(raw)
    return reports.create_report(db.session(), current_principal(), body), 201


@bp.route("/reports", methods=["GET"])
@login_required
@bp.arguments(schemas.ReportQuerySchema, location="query")
@bp.response(200, schemas.ReportListSchema)
def list_reports(query: dict) -> dict:
    """Reports of the caller's units and of units in their administration, newest first."""
    return reports.list_reports(db.session(), current_principal(), **query)


@bp.route("/reports/<int:report_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.ReportSchema)
def get_report(report_id: int) -> dict:
    """One report: its items, evidence list and approval state."""
    return reports.get_report(db.session(), current_principal(), report_id)


@bp.route("/reports/<int:report_id>/evidence", methods=["POST"])
@login_required
@bp.response(201, schemas.EvidenceSchema)
def add_evidence(report_id: int) -> dict:
    """Attach a document to an item of a pending report (multipart `file`, form `indicator`): PDF, PNG or JPEG,
    ≤ 20 MB; by the submitter."""
    # Refuse an oversized body before parsing it; the stream is capped too (a chunked body has no length).
    if request.content_length is not None and request.content_length > reports.MAX_EVIDENCE + 64 * 1024:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    principal = current_principal()
    request.max_content_length = reports.MAX_EVIDENCE + 64 * 1024
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file") from None
    if upload is None or not upload.filename:
        raise ApiError("validation_error", "请上传文件（multipart 字段 file）", status=422, field="file")
    if schemas.EvidenceFormSchema().validate(request.form):
        raise ApiError("validation_error", "indicator 必填，应为指标编码", status=422, field="indicator")
    content = upload.stream.read(reports.MAX_EVIDENCE + 1)
    return reports.add_evidence(db.session(), principal, report_id, request.form["indicator"], upload.filename, content)


@bp.route("/reports/<int:report_id>/evidence/<int:evidence_id>", methods=["GET"])
@login_required
def get_evidence(report_id: int, evidence_id: int) -> Response:
    """The document's bytes, as an attachment, never cached; audited."""
    row, content = reports.get_evidence(db.session(), current_principal(), report_id, evidence_id)
    response = Response(content, mimetype=row.content_type)
    response.headers.set("Content-Disposition", "attachment", filename=row.filename)
    response.headers.update(NO_STORE)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
