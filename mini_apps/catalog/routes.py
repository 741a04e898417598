"""`/api/workbench/apps` (what the signed-in member may open) and `/api/catalog/apps` (administrators).

Thin: arguments in, `mini_apps.catalog.service` out.
"""

from __future__ import annotations

from mini_apps.catalog import schemas, service
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_role

workbench_bp = Blueprint(
    "workbench_apps", __name__, url_prefix="/api/workbench", description="应用在线: the signed-in member's apps"
)
bp = Blueprint("catalog", __name__, url_prefix="/api/catalog", description="应用在线: the app catalog")


@workbench_bp.route("/apps", methods=["GET"])
@login_required
@workbench_bp.response(200, schemas.WorkbenchSchema)
def workbench_apps() -> dict:
    """The apps the caller may open, by workbench section (行政办公, 医疗临床 …), in display order."""
    return service.workbench_apps(current_principal())


@bp.route("/apps", methods=["GET"])
@require_role("admin")
@bp.response(200, schemas.AppListSchema)
def list_apps() -> dict:
    """Apps owned within the caller's subtree, and province-built apps (read-only unless a province admin)."""
    return service.list_apps(current_principal())


@bp.route("/apps", methods=["POST"])
@require_role("admin")
@bp.arguments(schemas.AppInputSchema)
@bp.response(201, schemas.AppSchema)
def register_app(body: dict) -> dict:
    """Register an app: regional under a node of the caller's subtree (external https entry), or province-built."""
    return service.add_app(current_principal(), body)


@bp.route("/apps/<code>", methods=["GET"])
@require_role("admin")
@bp.response(200, schemas.AppSchema)
def get_app(code: str) -> dict:
    return service.get_app(current_principal(), code)


@bp.route("/apps/<code>", methods=["PATCH"])
@require_role("admin")
@bp.arguments(schemas.AppChangeSchema(partial=True))
@bp.response(200, schemas.AppSchema)
def change_app(body: dict, code: str) -> dict:
    """Change fields of an app; each visibility list given replaces the stored one."""
    return service.change_app(current_principal(), code, body)


@bp.route("/apps/<code>/withdraw", methods=["POST"])
@require_role("admin")
@bp.response(200, schemas.AppSchema)
def withdraw_app(code: str) -> dict:
    """Take the app off every workbench (it stays in the catalog)."""
    return service.withdraw_app(current_principal(), code)


@bp.route("/apps/<code>/restore", methods=["POST"])
@require_role("admin")
@bp.response(200, schemas.AppSchema)
def restore_app(code: str) -> dict:
    return service.restore_app(current_principal(), code)
