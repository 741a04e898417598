"""Scheduled supervision jobs: the nightly automatic intake (supervision/intake.py) and the hourly alert repeats.

Nightly at 01:30 China time (17:30 UTC), after the day's referrals and contracts are in and before the morning's
dashboards: the last complete month, quarter and year (late events — a referral closed, a follow-up done after the
month ended — still change them, and the correction is versioned by `values.record`) and the current month,
quarter and year so far (this year's signing coverage is watched all year, not only after it ends).
Each period commits on its own and schedules its own roll-up, so one failing period does not hold back the others.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from flask import Flask

from mini_apps.family_doctor.service import today
from supervision import alerts, intake
from supervision.periods import Period, last_complete, period_of
from workbench import db

log = logging.getLogger(__name__)

NIGHTLY_SECONDS = 86400
NIGHTLY_OFFSET = 17 * 3600 + 30 * 60  # 17:30 UTC = 01:30 China time


def nightly_periods(on: date) -> list[Period]:
    """What the nightly intake computes on the China day `on`: the last complete month, quarter and year, and the
    current ones so far."""
    kinds = ("month", "quarter", "year")
    return [last_complete(on, kind) for kind in kinds] + [period_of(on, kind) for kind in kinds]


def nightly_intake(on: date | None = None) -> dict[str, Any]:
    """The nightly job (runs in the app context the queue gives jobs)."""
    on = on or today()
    session = db.session()
    done: dict[str, Any] = {}
    failed: list[str] = []
    for period in nightly_periods(on):
        try:
            done[period.code] = intake.run_intake(session, period)
        except Exception:
            session.rollback()
            failed.append(period.code)
            log.exception("automatic intake of %s failed", period.code, extra={"job": "supervision.nightly_intake"})
    if failed:
        # Raise after the other periods ran, so the queue's retry (and its failure record) sees the job failed.
        raise RuntimeError(f"automatic intake failed for {', '.join(failed)}")
    return {"on": on.isoformat(), "periods": done}


def init_app(app: Flask) -> None:
    """Register the nightly intake and the hourly alert repeats (repeat intervals are in hours, and repeats fall due
    without any recomputation)."""
    queue = app.extensions["workbench.queue"]
    queue.every(NIGHTLY_SECONDS, nightly_intake, name="supervision.nightly_intake", offset=NIGHTLY_OFFSET)
    queue.every(3600, alerts.repeat_job, name="supervision.alert_repeats")
