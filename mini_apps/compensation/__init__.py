"""补偿机制改革: compensation of grassroots institutions by standardised workload (标化工作当量) — the service-item
list, 当量 tables and institution tiers (`catalog`, `routes`), workload intake from feeds and approved manual entry
with quality gates and versioned corrections (`workload`, `workload_routes`), prices, performance bandings and
assessments, line items, fee income and county schemes (`pricing`, `pricing_routes`), settlement with frozen
snapshots and approval (`settlement`, `settlement_routes`), internal distribution among staff (`distribution`,
`distribution_routes`), the pages (`pages`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.compensation import (
        distribution_routes,
        pages,
        pricing_routes,
        routes,
        settlement_routes,
        workload_routes,
    )
    from workbench.api import register_blueprint

    for module in (routes, workload_routes, pricing_routes, settlement_routes, distribution_routes):
        register_blueprint(app, module.bp)
    pages.init_app(app)
