"""精密智控: targeted-population control — campaigns, roster intake, dispatch, tasks, the county index."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.precision_control import routes
    from workbench.api import register_blueprint

    register_blueprint(app, routes.bp)
