"""Reading request bodies and fields the way each family does.

oapi endpoints take JSON (some clients still post forms); the new API takes camelCase JSON; admin endpoints take
JSON and must answer bad input with a 400 naming the field, so each reader raises the matching error type.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sandbox.errors import AdminError, ApiError, OapiError


async def oapi_body(request: web.Request) -> dict[str, Any]:
    """The oapi request body as a dict: JSON, a form, or nothing (then the query string)."""
    raw = await request.read()
    if not raw:
        return {k: v for k, v in request.query.items() if k != "access_token"}
    ctype = request.content_type
    if ctype == "application/x-www-form-urlencoded":
        form = await request.post()
        return {k: v for k, v in form.items()}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise OapiError(43004, "无效的HTTP HEADER Content-Type或请求体不是合法JSON") from exc
    if not isinstance(body, dict):
        raise OapiError(40035, "不合法的参数")
    return body


async def api_body(request: web.Request) -> dict[str, Any]:
    """The new-API JSON body; malformed JSON is a 400 as the gateway answers it."""
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "InvalidParameter.JsonFormat", "请求体不是合法的JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidParameter", "请求体必须是JSON对象")
    return body


async def admin_body(request: web.Request) -> dict[str, Any]:
    """An admin JSON body; an empty body counts as `{}`."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise AdminError("请求体不是合法的JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise AdminError("请求体必须是JSON对象", code="invalid_json")
    return body


def admin_str(body: dict[str, Any], name: str, *, required: bool = True, default: str | None = None) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise AdminError(f"缺少参数 {name}", field=name, code="missing")
        return default
    if not isinstance(value, str):
        raise AdminError(f"参数 {name} 必须是字符串", field=name)
    return value


def admin_int(
    body: dict[str, Any],
    name: str,
    *,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    value = body.get(name, default)
    if value is None:
        raise AdminError(f"缺少参数 {name}", field=name, code="missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdminError(f"参数 {name} 必须是整数", field=name)
    if minimum is not None and value < minimum:
        raise AdminError(f"参数 {name} 不能小于 {minimum}", field=name)
    if maximum is not None and value > maximum:
        raise AdminError(f"参数 {name} 不能大于 {maximum}", field=name)
    return value


def int_field(value: Any) -> int | None:
    """An integer given as a number or a numeric string (oapi clients send both); None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def id_list(value: Any) -> list[str] | None:
    """A list of ids given as a JSON list or a comma-separated string (oapi uses both); None if neither."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return [str(v) for v in value]
    return None
