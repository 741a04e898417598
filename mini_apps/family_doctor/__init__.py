"""家庭医生签约 (获得层): family-doctor teams, signed residents and their contracts, and the bulk import.

Members who leave the organisation leave their teams (`jobs.drop_departed_members`). Scene groups, reminders,
H5 pages and supervision figures come later (issue 6).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.family_doctor import jobs, routes
    from workbench.api import register_blueprint

    register_blueprint(app, routes.bp)
    app.extensions["workbench.queue"].every(jobs.DEPARTURE_SWEEP_SECONDS, jobs.drop_departed_members)
