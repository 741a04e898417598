"""家庭医生签约 (获得层): family-doctor teams, signed residents and their contracts, and the bulk import.

Scene groups, reminders, H5 pages and supervision figures come later (issue 6).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.family_doctor import routes
    from workbench.api import register_blueprint

    register_blueprint(app, routes.bp)
