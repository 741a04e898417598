"""预约转诊 · 双向转诊 (reference/domain.md §4): referrals up to the county hospital and back down, with slots,
SLA timers, cards to the receiving department and the patient told in their family doctor's chat (issue 7).

The state machine (`states`), the data model (`models`, migration 0010), the rules of sides, scope, sharing the
record and every state change (`service`), and the API (`routes`, `schemas`: `/api/referrals`).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.referral import routes, timers
    from workbench.api import register_blueprint

    register_blueprint(app, routes.bp)
    # SLA reminders and escalations, expiries and no-shows, every minute.
    app.extensions["workbench.queue"].every(timers.TIMER_SECONDS, timers.run_timers)
