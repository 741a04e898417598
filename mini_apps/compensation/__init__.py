"""补偿机制改革: compensation of grassroots institutions by standardised workload (标化工作当量) — the service-item
list, 当量 tables and institution tiers (`catalog`, `routes`), workload intake from feeds and approved manual entry
with quality gates and versioned corrections (`workload`, `workload_routes`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.compensation import routes, workload_routes
    from workbench.api import register_blueprint

    register_blueprint(app, routes.bp)
    register_blueprint(app, workload_routes.bp)
