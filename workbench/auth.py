"""Who is calling. Until DingTalk free-login and position scopes land (issue 4), operator APIs take the
`ADMIN_TOKEN` bearer credential; without it configured they are closed."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import current_app, request

from workbench.errors import ApiError


def require_admin(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        expected = current_app.config["SETTINGS"].admin_token
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError("unauthorized", "需要管理员凭证 (Authorization: Bearer <ADMIN_TOKEN>)", status=401)
        return view(*args, **kwargs)

    # Declare the credential in the OpenAPI description (flask-smorest reads `_apidoc` when the route registers).
    doc = getattr(wrapped, "_apidoc", {})
    doc.setdefault("manual_doc", {})["security"] = [{"adminToken": []}]
    wrapped._apidoc = doc
    return wrapped
