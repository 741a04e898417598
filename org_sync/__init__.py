"""组织在线: the five-level organisation tree mirrored from DingTalk contacts, full and incremental."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from org_sync import cli, events, jobs, routes
    from workbench.api import register_blueprint

    app.cli.add_command(cli.org_sync_cli)
    events.register(app.extensions["workbench.events"])
    jobs.schedule(app)
    register_blueprint(app, routes.bp)
