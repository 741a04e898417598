"""bot/: messages, interactive cards and approvals out to DingTalk chats; reliable, batched, within quota.

Other parts call `bot.outbox.enqueue_message(...)` inside their own transaction, with a message rendered by
`bot.messages`; the bot delivers it after their commit.
"""

from __future__ import annotations

from flask import Flask

RECOVER_SECONDS = 15
RESULTS_SECONDS = 60


def init_app(app: Flask) -> None:
    from bot import outbox, routes
    from workbench.api import register_blueprint

    queue = app.extensions["workbench.queue"]
    queue.every(RECOVER_SECONDS, outbox.recover_outbox)
    queue.every(RESULTS_SECONDS, outbox.fetch_send_results)
    register_blueprint(app, routes.bp)
    app.register_blueprint(routes.callback_bp)
