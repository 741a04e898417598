"""`/api/precision-control/campaigns/<id>/index...`: a campaign's index at a node, the county colour map and the
trend (`mini_apps.precision_control.index`). Thin: arguments in, figures out; schemas beside the routes."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate

from mini_apps.precision_control import index
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required

ZH = {"invalid": "格式不正确", "null": "不能为空"}

bp = Blueprint(
    "precision_control_index",
    __name__,
    url_prefix="/api/precision-control",
    description="精密智控: the county index and the five-colour map",
)


# -- schemas ------------------------------------------------------------------------------------------------------


class IndexQuerySchema(Schema):
    node_id = fields.Integer(
        load_default=None, error_messages=ZH, metadata={"description": "default: the owner, or the reader's top node"}
    )
    at = fields.AwareDateTime(
        load_default=None,
        default_timezone=UTC,
        error_messages={**ZH, "invalid": "时间格式不正确（ISO 8601）"},
        metadata={"description": "the moment overdue is judged at (default now)"},
    )


class MapQuerySchema(Schema):
    node_id = fields.Integer(load_default=None, error_messages=ZH)


class TrendQuerySchema(Schema):
    node_id = fields.Integer(load_default=None, error_messages=ZH)
    days = fields.Integer(
        load_default=30,
        error_messages=ZH,
        validate=validate.Range(min=1, max=index.MAX_TREND_DAYS, error=f"天数须为 1–{index.MAX_TREND_DAYS}"),
    )


class IndexCampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    state = fields.String()
    owner_node_id = fields.Integer()
    owner_name = fields.String()
    measure = fields.String(metadata={"enum": list(index.MEASURES)})
    measure_label = fields.String()
    thresholds = fields.List(fields.Float())


class IndexEntrySchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    level = fields.String()
    parent_id = fields.Integer(allow_none=True)
    tasks = fields.Integer()
    open = fields.Integer()
    finished = fields.Integer()
    completed = fields.Integer()
    unreachable = fields.Integer()
    transferred = fields.Integer()
    closed = fields.Integer()
    on_time = fields.Integer()
    overdue = fields.Integer()
    positive = fields.Integer()
    completion_rate = fields.Float(
        allow_none=True, metadata={"description": "completed / (tasks − closed − transferred) %"}
    )
    on_time_rate = fields.Float(allow_none=True, metadata={"description": "finished on time / finished %"})
    overdue_share = fields.Float(allow_none=True, metadata={"description": "overdue / open %"})
    value = fields.Float(allow_none=True, metadata={"description": "the index rule's measure"})
    colour = fields.String(allow_none=True, metadata={"enum": ["red", "orange", "yellow", "blue", "green"]})


class TrailSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    level = fields.String()


class IndexSchema(Schema):
    campaign = fields.Nested(IndexCampaignSchema)
    at = fields.DateTime()
    node = fields.Nested(IndexEntrySchema)
    children = fields.List(fields.Nested(IndexEntrySchema))
    trail = fields.List(fields.Nested(TrailSchema))


class ColourCountsSchema(Schema):
    red = fields.Integer()
    orange = fields.Integer()
    yellow = fields.Integer()
    blue = fields.Integer()
    green = fields.Integer()
    none = fields.Integer()


class MapSchema(Schema):
    campaign = fields.Nested(IndexCampaignSchema)
    node = fields.Nested(IndexEntrySchema)
    counties = fields.List(fields.Nested(IndexEntrySchema))
    counts = fields.Nested(ColourCountsSchema)


class TrendPointSchema(Schema):
    day = fields.Date()
    live = fields.Boolean(metadata={"description": "today, computed from the tasks (else a stored snapshot)"})
    tasks = fields.Integer()
    finished = fields.Integer()
    completed = fields.Integer()
    on_time = fields.Integer()
    overdue = fields.Integer()
    positive = fields.Integer()
    value = fields.Float(allow_none=True)
    colour = fields.String(allow_none=True)


class TrendSchema(Schema):
    campaign = fields.Nested(IndexCampaignSchema)
    node = fields.Nested(TrailSchema)
    days = fields.Integer()
    points = fields.List(fields.Nested(TrendPointSchema))


# -- routes -------------------------------------------------------------------------------------------------------


@bp.route("/campaigns/<int:campaign_id>/index", methods=["GET"])
@login_required
@bp.arguments(IndexQuerySchema, location="query")
@bp.response(200, IndexSchema)
def campaign_index(query: dict, campaign_id: int) -> dict:
    """The node's figures and colour, its children's (drill-down) and the breadcrumbs."""
    return index.node_index(db.session(), current_principal(), campaign_id, query["node_id"], query["at"])


@bp.route("/campaigns/<int:campaign_id>/index/map", methods=["GET"])
@login_required
@bp.arguments(MapQuerySchema, location="query")
@bp.response(200, MapSchema)
def campaign_index_map(query: dict, campaign_id: int) -> dict:
    """Every county at or below the node with its figures and colour (the five-colour map), and the colour counts."""
    return index.county_map(db.session(), current_principal(), campaign_id, query["node_id"])


@bp.route("/campaigns/<int:campaign_id>/index/trend", methods=["GET"])
@login_required
@bp.arguments(TrendQuerySchema, location="query")
@bp.response(200, TrendSchema)
def campaign_index_trend(query: dict, campaign_id: int) -> dict:
    """The node's daily snapshots of the last `days` days and today computed live."""
    return index.trend(db.session(), current_principal(), campaign_id, query["node_id"], query["days"])
