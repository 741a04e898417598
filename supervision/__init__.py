"""监管在线: indicators computed along the tree, targets, alerts into chats, dashboards."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from supervision import alert_routes, export_routes, feed_routes, figures_routes, jobs, pages, report_routes, routes
    from workbench.api import register_blueprint

    for module in (routes, feed_routes, figures_routes, report_routes, alert_routes, export_routes):
        register_blueprint(app, module.bp)
    pages.init_app(app)  # the dashboard's H5 pages at /h5/apps/supervision/
    jobs.init_app(app)  # nightly automatic intake, hourly alert repeats
