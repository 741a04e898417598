"""预约转诊 · 双向转诊 (reference/domain.md §4): referrals up to the county hospital and back down, with slots,
SLA timers, cards to the receiving department and the patient told in their family doctor's chat (issue 7).

The state machine (`states`), the data model (`models`, migration 0010), the rules of sides, scope, sharing the
record and every state change (`service`), and the API (`routes`, `schemas`: `/api/referrals`).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.referral import cards, rekey, routes, timers  # noqa: F401  (cards: its button handlers)
    from workbench.api import register_blueprint
    from workbench.cli import register_rekey

    register_blueprint(app, routes.bp)
    from mini_apps.referral import pages

    pages.init_app(app)  # the clinicians' H5 pages at /h5/apps/referral/
    register_rekey(app, "referrals", rekey.rekey_referrals)
    register_rekey(app, "referral attachments", rekey.rekey_attachments)
    # SLA reminders and escalations, expiries and no-shows, every minute.
    app.extensions["workbench.queue"].every(timers.TIMER_SECONDS, timers.run_timers)
