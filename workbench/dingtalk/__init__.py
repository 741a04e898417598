"""The DingTalk gateway: the one place the workbench talks to DingTalk (or the sandbox standing in for it).

Outbound: `get_gateway()` — both API families, token cache, rate limits, retries, the monthly quota meter.
Inbound: `POST /dingtalk/callback` (HTTP push) and the Stream worker (`flask stream`), both feeding one
`EventRouter` (`get_router()`) where the parts register their handlers.
"""

from __future__ import annotations

from flask import Flask, current_app

from workbench.dingtalk import events
from workbench.dingtalk.crypto import CallbackCrypto
from workbench.dingtalk.gateway import DingTalkGateway
from workbench.dingtalk.meter import QuotaMeter

__all__ = ["DingTalkGateway", "get_gateway", "get_meter", "init_app"]


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"].dingtalk
    engine = app.extensions["workbench.db"].engine
    meter = QuotaMeter(engine, settings.monthly_api_quota, settings.monthly_message_quota)
    app.extensions["workbench.meter"] = meter
    app.extensions["workbench.gateway"] = DingTalkGateway(
        settings, redis=app.extensions["workbench.redis"], meter=meter
    )
    if settings.callback_token and settings.callback_aes_key:
        # Console-configured event subscription of an internal app: the owner key is the app key (§3.3).
        app.extensions["workbench.callback_crypto"] = CallbackCrypto(
            settings.callback_token, settings.callback_aes_key, settings.app_key
        )
        from workbench.dingtalk.callback import bp

        app.register_blueprint(bp)
    events.init_app(app)


def get_gateway() -> DingTalkGateway:
    return current_app.extensions["workbench.gateway"]


def get_meter() -> QuotaMeter:
    return current_app.extensions["workbench.meter"]
