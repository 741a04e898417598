"""Who is calling: DingTalk free-login, JWT access tokens, roles and the scoping helper.

Routes declare what they need with `@login_required` or `@require_role("admin", ...)` and read the caller with
`current_principal()`. A bearer token is either a workbench access token (a member) or the deploy-time
`ADMIN_TOKEN` (the operator: the province IT team before and beside the synced tree; every use is audited).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import Flask, current_app, g, request

from workbench import audit, db
from workbench.auth.principal import Principal, Scope, administers_whole_tree, load_principal, operator_principal
from workbench.errors import ApiError

__all__ = [
    "Principal",
    "Scope",
    "current_principal",
    "init_app",
    "login_required",
    "require_admin",
    "require_province_admin",
    "require_role",
]


def current_principal() -> Principal:
    """The caller of this request (resolved once per request); 401 when there is none."""
    principal = g.get("principal")
    if principal is None:
        principal = g.principal = _authenticate()
    return principal


def _authenticate() -> Principal:
    from workbench.auth.tokens import decode_access_token

    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError("unauthorized", "需要登录 (Authorization: Bearer <access_token>)", status=401)
    settings = current_app.config["SETTINGS"]
    if settings.admin_token and hmac.compare_digest(given.encode(), settings.admin_token.encode()):
        # The operator sees everything, so every use is on record.
        principal = operator_principal()
        audit.record(principal, "auth.operator", detail={"method": request.method, "path": request.path})
        return principal
    claims = decode_access_token(settings, given)
    principal = load_principal(db.session(), claims.member_id)
    if principal is None:
        raise ApiError("account_inactive", "账号已停用或已离职，请联系管理员", status=401)
    return principal


def _document(wrapped: Callable) -> Callable:
    # Declare the bearer credential in the OpenAPI description (flask-smorest reads `_apidoc` at registration).
    doc = getattr(wrapped, "_apidoc", {})
    doc.setdefault("manual_doc", {})["security"] = [{"bearerToken": []}]
    wrapped._apidoc = doc
    return wrapped


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        current_principal()
        return view(*args, **kwargs)

    return _document(wrapped)


def require_role(*codes: str) -> Callable[[Callable], Callable]:
    """The caller must hold one of `codes` somewhere (the operator holds every role); which subtree the role
    covers is the service's business, through `principal.scope(*codes)`."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not current_principal().has_role(*codes):
                raise ApiError("forbidden", "没有权限执行此操作", status=403, required_roles=list(codes))
            return view(*args, **kwargs)

        return _document(wrapped)

    return decorate


require_admin = require_role("admin")


def require_province_admin(view: Callable) -> Callable:
    """Province-wide operations (the message outbox, org sync runs): the operator or a province commission admin."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not administers_whole_tree(current_principal(), db.session()):
            raise ApiError("forbidden", "仅省级管理员可执行此操作", status=403)
        return view(*args, **kwargs)

    return _document(wrapped)


def init_app(app: Flask) -> None:
    from workbench.api import register_blueprint
    from workbench.auth import routes

    register_blueprint(app, routes.bp)
    if app.config["SETTINGS"].dingtalk.sandbox:
        register_blueprint(app, routes.sandbox_bp)
