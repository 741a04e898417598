"""家庭医生签约 (获得层): family-doctor teams, signed residents and their contracts (`service`, `importer`); each
team's signed-doctor chat (`chats`); telling a resident something (`notices`) and the follow-up and renewal
reminders (`reminders`); the signing figures supervision reads (`figures`); the team's H5 pages (`pages`).

Periodic work: members who leave the organisation leave their teams (`jobs.drop_departed_members`, every 10
minutes); chats out of step with contracts that ended by the calendar are synced (`chats.sweep_team_chats`,
daily 00:20 China time); follow-ups are scheduled and reminders sent (`reminders.run_daily`, daily 09:00).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from mini_apps.family_doctor import chats, jobs, pages, rekey, reminders, routes
    from workbench.api import register_blueprint
    from workbench.cli import register_rekey

    register_blueprint(app, routes.bp)
    pages.init_app(app)
    register_rekey(app, "family-doctor residents", rekey.rekey_residents)
    app.extensions["workbench.queue"].every(jobs.DEPARTURE_SWEEP_SECONDS, jobs.drop_departed_members)
    app.extensions["workbench.queue"].every(chats.SWEEP_SECONDS, chats.sweep_team_chats, offset=chats.SWEEP_OFFSET)
    app.extensions["workbench.queue"].every(reminders.DAILY_SECONDS, reminders.run_daily, offset=reminders.DAILY_OFFSET)
