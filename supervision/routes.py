"""Placeholder: filled in by its owner this session."""

from __future__ import annotations

from workbench.api import Blueprint

bp = Blueprint("supervision_routes", __name__, url_prefix="/api/supervision", description="监管在线")
