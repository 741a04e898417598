"""The REST API's OpenAPI 3 description (flask-smorest on marshmallow): `/api/openapi.json`, docs at `/api/docs`.

Parts register their blueprints with `register_blueprint(app, bp)` so every route lands in the spec.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Flask, Response
from flask_smorest import Api, Blueprint

__all__ = ["Blueprint", "init_app", "register_blueprint", "xlsx_download"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="医共体协同工作台 Medical Community Workbench",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
    )
    api = Api(app)
    api.spec.components.security_scheme(
        "bearerToken",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "the access token from /api/auth/dingtalk (or the operator's ADMIN_TOKEN)",
        },
    )
    app.extensions["workbench.api"] = api


def register_blueprint(app: Flask, blueprint: Blueprint, **options) -> None:
    app.extensions["workbench.api"].register_blueprint(blueprint, **options)


def xlsx_download(body: bytes, filename: str, fallback: str) -> Response:
    """A workbook as a download: the Chinese file name as UTF-8 with an ASCII `fallback` for old clients
    (RFC 6266), never cached (it holds figures the caller's scope allowed)."""
    response = Response(body, mimetype=XLSX)
    response.headers["Content-Disposition"] = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
