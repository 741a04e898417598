"""精密智控: targeted-population control — campaigns, roster intake, dispatch, tasks, the county index."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.precision_control import rekey, routes
    from workbench.api import register_blueprint
    from workbench.cli import register_rekey

    register_blueprint(app, routes.bp)
    register_rekey(app, "precision-control persons", rekey.rekey_persons)
