"""`/api/referrals/...`: create, read, outbox and inbox lists, the timeline, transitions and attachments.

Thin: arguments in, `mini_apps.referral.service` out (sides, scope and audit live there).
"""

from __future__ import annotations

import json

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from mini_apps.referral import chats, fhir, figures, icd10, schemas, service, slots
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_role
from workbench.errors import ApiError

bp = Blueprint("referral", __name__, url_prefix="/api/referrals", description="预约转诊 · 双向转诊: referrals")


@bp.route("", methods=["POST"])
@login_required
@bp.arguments(schemas.ReferralInputSchema)
@bp.response(201, schemas.ReferralSchema)
def create_referral(body: dict) -> dict:
    """A referral from the caller's institution: a draft, or submitted at once with `"submit": true`."""
    return service.create_referral(current_principal(), body)


@bp.route("/<int:referral_id>", methods=["PATCH"])
@login_required
@bp.arguments(schemas.ReferralPatchSchema)
@bp.response(200, schemas.ReferralSchema)
def update_draft(body: dict, referral_id: int) -> dict:
    """Edit a draft (applicant side): any create fields, the rest kept; `"submit": true` then submits it. Past its
    draft a referral is a 409 with the caller's allowed actions."""
    return service.update_draft(current_principal(), referral_id, body)


@bp.route("", methods=["GET"])
@login_required
@bp.arguments(schemas.ReferralQuerySchema, location="query")
@bp.response(200, schemas.ReferralListSchema)
def list_referrals(query: dict) -> dict:
    """The caller's outbox (as applicant) or inbox (as receiver), with counts by state; masked; audited."""
    return service.list_referrals(current_principal(), query)


@bp.route("/targets", methods=["GET"])
@login_required
@bp.response(200, schemas.TargetsSchema)
def list_targets() -> dict:
    """What the new-referral form offers: the caller's departments and the county's institutions to refer to."""
    return service.referral_targets(current_principal())


@bp.route("/<int:referral_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.ReferralSchema)
def get_referral(referral_id: int):
    """One referral: the clinical summary and attachments only while the caller's side shares the record."""
    return service.get_referral(current_principal(), referral_id), 200, {"Cache-Control": "no-store"}


@bp.route("/<int:referral_id>/events", methods=["GET"])
@login_required
@bp.response(200, schemas.EventListSchema)
def list_events(referral_id: int) -> dict:
    """The timeline: every transition, who, when and why."""
    return service.list_events(current_principal(), referral_id)


@bp.route("/<int:referral_id>/actions/<action>", methods=["POST"])
@login_required
@bp.arguments(schemas.ActionInputSchema)
@bp.response(200, schemas.ReferralSchema)
def act(body: dict, referral_id: int, action: str) -> dict:
    """Take an action (submit, accept, reject …); `accept` with a `slot` books it and schedules at once. An action
    that does not apply is a 409 listing the caller's allowed ones."""
    return service.act(current_principal(), referral_id, action, body)


@bp.route("/<int:referral_id>/attachments", methods=["POST"])
@login_required
@bp.response(201, schemas.AttachmentSchema)
def add_attachment(referral_id: int) -> dict:
    """Attach a document (multipart `file`, form `kind`): PDF, PNG, JPEG or DICOM, ≤ 20 MB."""
    # Refuse an oversized body before parsing it; the stream is capped too (a chunked body has no length).
    if request.content_length is not None and request.content_length > service.MAX_ATTACHMENT + 64 * 1024:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    principal = current_principal()
    # A body without a length (chunked) is cut off while parsing instead of spooling to disk whole.
    request.max_content_length = service.MAX_ATTACHMENT + 64 * 1024
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file") from None
    if upload is None or not upload.filename:
        raise ApiError("validation_error", "请上传文件（multipart 字段 file）", status=422, field="file")
    errors = schemas.AttachmentFormSchema().validate(request.form)
    if errors:
        raise ApiError("validation_error", "未知的资料类型", status=422, field="kind")
    content = upload.stream.read(service.MAX_ATTACHMENT + 1)
    if len(content) > service.MAX_ATTACHMENT:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    return service.add_attachment(principal, referral_id, request.form["kind"], upload.filename, content)


@bp.route("/<int:referral_id>/attachments/<int:attachment_id>", methods=["GET"])
@login_required
def get_attachment(referral_id: int, attachment_id: int) -> Response:
    """The document's bytes (decrypted), as an attachment, never cached; audited."""
    row, content = service.get_attachment(current_principal(), referral_id, attachment_id)
    response = Response(content, mimetype=row.content_type)
    response.headers.set("Content-Disposition", "attachment", filename=row.filename)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/slots", methods=["PUT"])
@require_role("institution_admin", "referral_coordinator")
@bp.arguments(schemas.SlotPublishSchema)
@bp.response(200, schemas.SlotPlacesSchema)
def publish_slot(body: dict) -> dict:
    """Publish a department's capacity (号源) for one day and half-day: its institution's admins and referral
    coordinators; not below what is booked (409 `capacity`), not for a past day (422 `day`)."""
    return slots.publish(current_principal(), body)


@bp.route("/slots/week", methods=["PUT"])
@require_role("institution_admin", "referral_coordinator")
@bp.arguments(schemas.SlotWeekSchema)
@bp.response(200, schemas.SlotPlacesListSchema)
def publish_slot_week(body: dict) -> dict:
    """Publish seven days from `from` at once by weekday and half-day; all or nothing, with the rules above."""
    return slots.publish_week(current_principal(), body)


@bp.route("/slots", methods=["GET"])
@login_required
@bp.arguments(schemas.SlotQuerySchema, location="query")
@bp.response(200, schemas.SlotPlacesListSchema)
def list_slots(query: dict) -> dict:
    """A department's published slots and their free places, from `from` (today) to `to` (a week on)."""
    return slots.list_slots(current_principal(), query["department_id"], query["from_"], query["to"])


@bp.route("/icd10", methods=["GET"])
@login_required
@bp.arguments(schemas.Icd10QuerySchema, location="query")
@bp.response(200, schemas.Icd10ListSchema)
def search_icd10(query: dict) -> dict:
    """ICD-10 diagnoses by code prefix, Chinese name or everyday alias, or 拼音首字母; best first."""
    return {"items": icd10.search(query["q"], query["limit"])}


@bp.route("/figures", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(schemas.ReferralFiguresQuerySchema, location="query")
@bp.response(200, schemas.ReferralFiguresSchema)
def referral_figures(query: dict) -> dict:
    """Up-, down- and lateral referrals, acceptance time and 及时率, 到诊率, 结案率 and the down-referral follow-up
    rate per institution and every node above it, for referrals submitted in [start, end], within the caller's
    scope (`node_id`: one subtree of it; 404 outside)."""
    return figures.figures_view(current_principal(), query)


@bp.route("/<int:referral_id>/fhir", methods=["GET"])
@login_required
def export_fhir(referral_id: int) -> Response:
    """The referral as a FHIR R4 transaction Bundle (application/fhir+json), with the full ID number: for the sides
    sharing the clinical record now; audited (reason `fhir_export`)."""
    bundle = fhir.export_referral(current_principal(), referral_id, base_url=request.url_root)
    response = Response(json.dumps(bundle, ensure_ascii=False), mimetype=fhir.FHIR_JSON)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/fhir", methods=["POST"])
@login_required
@bp.response(201, schemas.ImportedReferralSchema)
def import_fhir() -> dict:
    """Create a referral from a FHIR Bundle of the export's shape; the caller is the applicant side. A missing or
    invalid element is a 422 naming its JSON path (`entry[2].resource.code.coding[0].code`). Inline documents
    become attachments; those referenced by URL only are listed in `not_fetched`."""
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError("validation_error", "请求体须为 FHIR JSON（application/fhir+json）", status=422, field="body")
    return fhir.import_bundle(current_principal(), body)


# -- referral chats: the group a receiving department takes its cards in ------------------------------------------


@bp.route("/chats", methods=["GET"])
@require_role(*chats.MANAGERS)
@bp.response(200, schemas.ReferralChatListSchema)
def list_chats() -> dict:
    """The referral chats of the departments and institutions the caller manages."""
    return chats.list_chats(current_principal())


@bp.route("/chats/<int:node_id>", methods=["GET"])
@require_role(*chats.MANAGERS)
@bp.response(200, schemas.ReferralChatSchema)
def get_chat(node_id: int) -> dict:
    """One node's referral chat (404 when it has none, or the node is outside the caller's scope)."""
    return chats.get_chat(current_principal(), node_id)


@bp.route("/chats/<int:node_id>", methods=["PUT"])
@require_role(*chats.MANAGERS)
@bp.arguments(schemas.ReferralChatInputSchema)
@bp.response(200, schemas.ReferralChatSchema)
def register_chat(body: dict, node_id: int) -> dict:
    """Register an existing group (its openConversationId) as the node's referral chat: the node's cards go there
    as one group card. 422 `conversation_id` when DingTalk does not know the group."""
    return chats.register_chat(current_principal(), node_id, body["conversation_id"])


@bp.route("/chats/<int:node_id>/create", methods=["POST"])
@require_role(*chats.MANAGERS)
@bp.response(201, schemas.ReferralChatSchema)
def create_chat(node_id: int) -> dict:
    """Create a scene group with the node's members and its institution's referral coordinators (owner: the node's
    leader, else the caller). 409 when the node has a chat already or no group template is configured."""
    return chats.create_chat(current_principal(), node_id)


@bp.route("/chats/<int:node_id>/sync", methods=["POST"])
@require_role(*chats.MANAGERS)
@bp.response(200, schemas.ReferralChatSchema)
def sync_chat(node_id: int) -> dict:
    """Add the node's members and coordinators who joined since to a group the workbench created."""
    return chats.sync_chat(current_principal(), node_id)


@bp.route("/chats/<int:node_id>", methods=["DELETE"])
@require_role(*chats.MANAGERS)
@bp.response(204)
def delete_chat(node_id: int) -> None:
    """Stop using the node's group (the group stays in DingTalk); its cards go one-to-one again."""
    chats.delete_chat(current_principal(), node_id)
