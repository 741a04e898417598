"""精密智控: targeted-population control — campaigns (`service`), roster intake (`roster`), dispatch and the county
queue (`dispatch`, `areas`), the doctors' tasks (`tasks`, `cards`, `pages`), reminders and overdue escalation
(`escalation`), the county index and five-colour map (`index`, `dashboard`), retention (`retention`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.precision_control import cards, dashboard, escalation, index, pages, rekey, retention, routes
    from workbench.api import register_blueprint
    from workbench.cli import register_rekey

    register_blueprint(app, routes.bp)
    register_rekey(app, "precision-control persons", rekey.rekey_persons)
    for part in (cards, pages, escalation, index, dashboard, retention):
        part.init_app(app)  # each registers its own blueprints, card handlers and periodic jobs
