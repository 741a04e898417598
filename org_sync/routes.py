"""`/api/org`: the organisation tree over HTTP. Thin: arguments in, `org_sync.service` out.

Every route needs a signed-in caller and reads only within their scope; changes need an administrator of the
node's subtree.
"""

from __future__ import annotations

from flask import Response, stream_with_context

from org_sync import schemas, service
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_admin

bp = Blueprint("org", __name__, url_prefix="/api/org", description="组织在线: the organisation tree")


@bp.route("/nodes/<int:node_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.NodeDetailSchema)
def get_node(node_id: int) -> dict:
    """A node with its ancestors and counts of its children and members."""
    return service.get_node(node_id, current_principal().scope())


@bp.route("/nodes/<int:node_id>", methods=["PATCH"])
@require_admin
@bp.arguments(schemas.LevelOverrideSchema)
@bp.response(200, schemas.NodeDetailSchema)
def patch_node(body: dict, node_id: int) -> dict:
    """Correct a node's level (`level_override`), or clear the correction with null; later syncs keep it."""
    return service.set_level_override(node_id, body["level_override"], current_principal())


@bp.route("/nodes/<int:node_id>/children", methods=["GET"])
@login_required
@bp.arguments(schemas.PageArgsSchema, location="query")
@bp.response(200, schemas.NodePageSchema)
def list_children(args: dict, node_id: int) -> service.Page:
    """Live sub-departments of a node, paged."""
    return service.list_children(node_id, current_principal().scope(), page=args["page"], page_size=args["page_size"])


@bp.route("/nodes", methods=["GET"])
@login_required
@bp.arguments(schemas.SearchArgsSchema, location="query")
@bp.response(200, schemas.NodePageSchema)
def search_nodes(args: dict) -> service.Page:
    """Nodes whose name contains `q`, paged (`limit` is an alias of `page_size`)."""
    page_size = args.get("limit") or args["page_size"]
    scope = current_principal().scope()
    return service.search_nodes(args["q"], scope, root_id=args["root"], page=args["page"], page_size=page_size)


@bp.route("/members/<userid>", methods=["GET"])
@login_required
@bp.arguments(schemas.MemberArgsSchema, location="query")
@bp.response(200, schemas.MemberSchema)
def get_member(args: dict, userid: str) -> dict:
    """A member with their positions (department, level, layer, leader)."""
    return service.get_member(userid, current_principal().scope(), args["corp_id"])


@bp.route("/export", methods=["GET"])
@require_admin
@bp.arguments(schemas.ExportArgsSchema, location="query")
@bp.response(200, schemas.ExportSchema)
def export(args: dict) -> Response:
    """Every live department and member of the subtree (`root`, or the whole tree) as DingTalk ids, names,
    parents and department lists; streamed, since a province has 300,000 members."""
    chunks = service.export_chunks(current_principal().scope("admin"), args["root"])
    return Response(stream_with_context(chunks), mimetype="application/json")
