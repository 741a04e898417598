"""应用在线: the app catalog and the workbench's mini apps, each a package of the same shape."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps import catalog, compensation, family_doctor, precision_control, referral

    catalog.init_app(app)
    family_doctor.init_app(app)
    referral.init_app(app)
    precision_control.init_app(app)
    compensation.init_app(app)
