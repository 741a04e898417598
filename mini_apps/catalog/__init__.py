"""应用在线: the app catalog — which apps exist, who may open them, and the workbench's list of them."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.catalog import routes
    from workbench.api import register_blueprint

    register_blueprint(app, routes.workbench_bp)
    register_blueprint(app, routes.bp)
