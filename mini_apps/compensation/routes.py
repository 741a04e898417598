"""`/api/compensation/...`: service items, 当量 tables (province tables and county adjustments, Excel in and out)
and institution tiers. Thin: arguments in, `catalog` / `excel` out; who may do what is in `catalog`'s docstring."""

from __future__ import annotations

from flask import Response, request

from mini_apps.compensation import catalog, excel, schemas
from workbench import db
from workbench.api import Blueprint, xlsx_download
from workbench.auth import current_principal, login_required
from workbench.errors import ApiError

bp = Blueprint(
    "compensation_routes",
    __name__,
    url_prefix="/api/compensation",
    description="补偿机制改革: service items, 当量 tables, institution tiers",
)


# -- service items ----------------------------------------------------------------------------------------------


@bp.route("/items", methods=["GET"])
@login_required
@bp.arguments(schemas.ItemQuerySchema, location="query")
@bp.response(200, schemas.ItemListSchema)
def list_items(query: dict) -> dict:
    """The service-item list (服务项目清单), by code; filters package, active, q (code or name)."""
    return catalog.list_items(db.session(), current_principal(), query)


@bp.route("/items", methods=["POST"])
@login_required
@bp.arguments(schemas.ItemInputSchema)
@bp.response(201, schemas.ItemSchema)
def create_item(body: dict) -> dict:
    """A new item (province administrators and the operator)."""
    return catalog.create_item(db.session(), current_principal(), body)


@bp.route("/items/<code>", methods=["GET"])
@login_required
@bp.response(200, schemas.ItemSchema)
def get_item(code: str) -> dict:
    return catalog.get_item(db.session(), current_principal(), code)


@bp.route("/items/<code>", methods=["PATCH"])
@login_required
@bp.arguments(schemas.ItemPatchSchema)
@bp.response(200, schemas.ItemSchema)
def update_item(body: dict, code: str) -> dict:
    """Edit an item; the package only while no published table prices it (409)."""
    return catalog.update_item(db.session(), current_principal(), code, body)


@bp.route("/items/<code>/deactivate", methods=["POST"])
@login_required
@bp.response(200, schemas.ItemSchema)
def deactivate_item(code: str) -> dict:
    """No new table may price the item; published tables keep it."""
    return catalog.deactivate_item(db.session(), current_principal(), code)


# -- 当量 tables --------------------------------------------------------------------------------------------------


@bp.route("/tables", methods=["POST"])
@login_required
@bp.arguments(schemas.TableInputSchema)
@bp.response(201, schemas.TableSchema)
def create_table(body: dict) -> dict:
    """A draft province table (region = a province commission) or county adjustment (region = a county bureau,
    `base_table_id` = a published table of its province)."""
    return catalog.create_table(db.session(), current_principal(), body)


@bp.route("/tables", methods=["GET"])
@login_required
@bp.arguments(schemas.TableQuerySchema, location="query")
@bp.response(200, schemas.TableListSchema)
def list_tables(query: dict) -> dict:
    """Tables of the caller's regions and of the regions above them."""
    return catalog.list_tables(db.session(), current_principal(), query)


@bp.route("/tables/<int:table_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.TableDetailSchema)
def get_table(table_id: int) -> dict:
    """The table and its rows (a county adjustment: its values, the base values and the change in percent)."""
    return catalog.get_table(db.session(), current_principal(), table_id)


@bp.route("/tables/<int:table_id>", methods=["PATCH"])
@login_required
@bp.arguments(schemas.TablePatchSchema)
@bp.response(200, schemas.TableSchema)
def update_table(body: dict, table_id: int) -> dict:
    """Edit a draft; a published table keeps only its name and note editable (409 otherwise)."""
    return catalog.update_table(db.session(), current_principal(), table_id, body)


@bp.route("/tables/<int:table_id>/values", methods=["PUT"])
@login_required
@bp.arguments(schemas.TableValuesInputSchema)
@bp.response(200, schemas.TableDetailSchema)
def put_values(body: dict, table_id: int) -> dict:
    """Replace a draft's values; a bad entry is a 422 naming `values.N[.field]`, nothing stored."""
    return catalog.set_values(db.session(), current_principal(), table_id, body["values"])


@bp.route("/tables/<int:table_id>/publish", methods=["POST"])
@login_required
@bp.response(200, schemas.TableSchema)
def publish_table(table_id: int) -> dict:
    """Draft → published (immutable); 422 `valid_from` when it overlaps another published table of the region."""
    return catalog.publish_table(db.session(), current_principal(), table_id)


@bp.route("/tables/<int:table_id>/withdraw", methods=["POST"])
@login_required
@bp.response(200, schemas.TableSchema)
def withdraw_table(table_id: int) -> dict:
    return catalog.withdraw_table(db.session(), current_principal(), table_id)


@bp.route("/tables/<int:table_id>/export.xlsx", methods=["GET"])
@login_required
@bp.doc(
    responses={
        "200": {
            "description": "the workbook (sheet 当量表, see mini_apps.compensation.excel)",
            "content": {excel.XLSX: {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
def export_table(table_id: int) -> Response:
    body, filename = excel.export_table(db.session(), current_principal(), table_id)
    return xlsx_download(body, filename, f"equivalents-{table_id}.xlsx")


@bp.route("/tables/<int:table_id>/import", methods=["POST"])
@login_required
@bp.response(200, schemas.TableDetailSchema)
def import_table(table_id: int) -> dict:
    """Replace a draft's values from a workbook (multipart `file`, .xlsx ≤ 5 MB, the export's layout); every bad
    row is reported in `error.rows` ({row, field, column, message}) and nothing is stored."""
    if request.content_length is not None and request.content_length > excel.MAX_UPLOAD + 64 * 1024:
        raise ApiError("payload_too_large", "文件不能超过 5 MB", status=413, field="file")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ApiError("validation_error", "请上传文件（multipart 字段 file）", status=422, field="file")
    content = upload.stream.read(excel.MAX_UPLOAD + 1)
    return excel.import_table(db.session(), current_principal(), table_id, upload.filename, content)


# -- institution tiers ----------------------------------------------------------------------------------------------


@bp.route("/institution-tiers", methods=["GET"])
@login_required
@bp.arguments(schemas.TierQuerySchema, location="query")
@bp.response(200, schemas.TierListSchema)
def list_tiers(query: dict) -> dict:
    """Institutions in the caller's scope with their tier (1 unless set)."""
    return catalog.list_tiers(db.session(), current_principal(), query)


@bp.route("/institution-tiers/<int:institution_id>", methods=["PUT"])
@login_required
@bp.arguments(schemas.TierInputSchema)
@bp.response(200, schemas.TierSchema)
def put_tier(body: dict, institution_id: int) -> dict:
    """Set an institution's remoteness tier (its county's administrators)."""
    return catalog.set_tier(db.session(), current_principal(), institution_id, body["tier"])
