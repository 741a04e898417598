"""`/api/precision-control/...`: campaigns, rosters, service areas, dispatch. Thin: arguments in, service out."""

from __future__ import annotations

from workbench.api import Blueprint

bp = Blueprint(
    "precision_control",
    __name__,
    url_prefix="/api/precision-control",
    description="精密智控: targeted-population control",
)
