"""`GET /healthz` (the process is alive) and `GET /readyz` (database, queue and a DingTalk token all reachable)."""

from __future__ import annotations

import concurrent.futures
import logging

import sqlalchemy as sa
from flask import Flask, current_app, jsonify

from workbench import db
from workbench.api import Blueprint, register_blueprint

log = logging.getLogger(__name__)
DINGTALK_PROBE_TIMEOUT = 3.0  # seconds
_probe_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz")
bp = Blueprint("health", __name__, description="Liveness and readiness probes")


@bp.get("/healthz")
def healthz():
    """The process is alive."""
    return jsonify({"status": "ok"})


def _check_database() -> dict:
    with db.get_db().engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"ok": True}


def _check_queue() -> dict:
    queue = current_app.extensions["workbench.queue"]
    if queue.redis is not None:
        queue.redis.ping()
    return {"ok": True, "mode": queue.mode}


def _check_dingtalk() -> dict:
    settings = current_app.config["SETTINGS"].dingtalk
    # With no cached token the gateway retries for up to a minute; a probe must answer within seconds.
    future = _probe_pool.submit(current_app.extensions["workbench.gateway"].check)
    try:
        future.result(timeout=DINGTALK_PROBE_TIMEOUT)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"no DingTalk token within {DINGTALK_PROBE_TIMEOUT:g}s") from None
    return {"ok": True, "target": "sandbox" if settings.sandbox else "dingtalk", "api_base": settings.api_base}


@bp.get("/readyz")
def readyz():
    """Database, queue and a DingTalk token are all reachable; 503 names the one that is not."""
    checks = {}
    for name, check in (("database", _check_database), ("queue", _check_queue), ("dingtalk", _check_dingtalk)):
        try:
            checks[name] = check()
        except Exception as exc:
            # The reason, not the traceback: readiness is polled often.
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    ready = all(check["ok"] for check in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503


def init_app(app: Flask) -> None:
    register_blueprint(app, bp)
