"""bot/: messages, interactive cards and approvals out to DingTalk chats; reliable, batched, within quota.

Other parts call `bot.outbox.enqueue_message(...)` inside their own transaction, with a message rendered by
`bot.messages`; the bot delivers it after their commit. Approvals the same way: `bot.approvals.request_approval(...)`,
with a callback the bot calls once with the result.
"""

from __future__ import annotations

from flask import Flask

RECOVER_SECONDS = 15
RESULTS_SECONDS = 60


def init_app(app: Flask) -> None:
    from bot import approvals, outbox, retention, routes, stream_cards
    from workbench.api import register_blueprint

    queue = app.extensions["workbench.queue"]
    queue.every(RECOVER_SECONDS, outbox.recover_outbox)
    queue.every(RESULTS_SECONDS, outbox.fetch_send_results)
    queue.every(approvals.POLL_SECONDS, approvals.poll_approvals)
    queue.every(86400, retention.prune_messages, name="bot.prune_messages", offset=retention.PRUNE_OFFSET)  # 03:10 CST
    approvals.register(app.extensions["workbench.events"])
    # Read by the Stream worker, which subscribes each topic (workbench/dingtalk/stream.py).
    app.extensions.setdefault("workbench.stream_callbacks", {})[stream_cards.TOPIC] = stream_cards.make_handler
    register_blueprint(app, routes.bp)
    app.register_blueprint(routes.callback_bp)
