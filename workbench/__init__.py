"""The core the parts share: the app factory, database, queue, errors, logging and the DingTalk gateway."""

from __future__ import annotations

from flask import Flask

from config import Settings, load_settings
from workbench import messages_zh

messages_zh.apply()  # before any schema is defined: see the module


def create_app(settings: Settings | None = None) -> Flask:
    """Build the workbench app; each package wires itself in with `init_app`.

    Raises `config.ConfigError` (naming the variable) when a setting is malformed.
    """
    settings = settings or load_settings()
    app = Flask(__name__, instance_path=str(settings.instance_path), instance_relative_config=False)
    app.config.from_mapping(SETTINGS=settings, SECRET_KEY=settings.secret_key, JSON_AS_ASCII=False)

    from workbench import api, audit, auth, cli, db, dingtalk, errors, h5, health, logs, queue

    logs.init_app(app)
    db.init_app(app)
    queue.init_app(app)
    api.init_app(app)
    errors.init_app(app)
    dingtalk.init_app(app)
    health.init_app(app)
    cli.init_app(app)
    auth.init_app(app)
    audit.init_app(app)
    h5.init_app(app)

    import org_sync

    org_sync.init_app(app)
    import bot

    bot.init_app(app)
    import mini_apps

    mini_apps.init_app(app)
    import supervision

    supervision.init_app(app)
    return app


def close_app(app: Flask) -> None:
    """Release what `create_app` opened: stop the in-process job worker first (its jobs use the other two), then
    the DingTalk gateway's connections and the database pool. For apps that are thrown away (tests, benches)."""
    app.extensions["workbench.queue"].close()
    app.extensions["workbench.gateway"].close()
    app.extensions["workbench.db"].dispose()
