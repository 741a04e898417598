"""`/api/auth/...`, `/api/me` and the audit log over HTTP. Thin: arguments in, `workbench.auth.service` out."""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import current_app, jsonify, redirect, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import orm

from org_sync.models import OrgMember, OrgMembership, OrgNode
from workbench import audit, db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_role, schemas, service
from workbench.errors import ApiError

bp = Blueprint("auth", __name__, url_prefix="/api", description="免登与权限: sign-in, the signed-in member, grants")
sandbox_bp = Blueprint("auth_sandbox", __name__, url_prefix="/api/auth/sandbox", description="沙箱登录 (sandbox only)")

DINGTALK_OAUTH_PAGE = "https://login.dingtalk.com/oauth2/auth"
OAUTH_STATE_SECONDS = 600
OAUTH_COOKIE = "wb_oauth_nonce"


def _settings():
    return current_app.config["SETTINGS"]


def _tokens(tokens: service.Tokens) -> dict:
    return dataclasses.asdict(tokens)


@bp.route("/auth/dingtalk", methods=["POST"])
@bp.arguments(schemas.CodeSchema)
@bp.response(200, schemas.TokensSchema)
def sign_in(body: dict) -> dict:
    """Free-login inside DingTalk: exchange a `dd.requestAuthCode` code (single-use, 5 minutes) for tokens."""
    return _tokens(service.sign_in_with_jsapi_code(_settings(), body["code"]))


@bp.route("/auth/oauth/start", methods=["GET"])
@bp.arguments(schemas.OAuthStartArgsSchema, location="query")
@bp.response(302)
def oauth_start(args: dict):
    """Browser sign-in (PC): redirect to DingTalk's OAuth2 page; it comes back to `/h5/` with `authCode`."""
    settings = _settings()
    nonce = secrets.token_hex(16)
    state = _state_serializer().dumps({"n": nonce, "next": args["next"]})
    if settings.dingtalk.sandbox:
        # No DingTalk login page here: the H5 shell's sandbox picker mints an OAuth code for a chosen member.
        target = "/h5/?" + urlencode({"login": "sandbox", "state": state})
    else:
        target = (
            DINGTALK_OAUTH_PAGE
            + "?"
            + urlencode(
                {
                    "redirect_uri": request.host_url + "h5/",
                    "response_type": "code",
                    "client_id": settings.dingtalk.app_key,
                    "scope": "openid",
                    "state": state,
                    "prompt": "consent",
                }
            )
        )
    response = redirect(target, code=302)
    # The nonce binds the state to this browser, so a code cannot be planted into someone else's session.
    response.set_cookie(
        OAUTH_COOKIE,
        nonce,
        max_age=OAUTH_STATE_SECONDS,
        httponly=True,
        samesite="Lax",
        path="/api/auth",
        secure=request.is_secure,
    )
    return response


@bp.route("/auth/oauth", methods=["POST"])
@bp.arguments(schemas.OAuthCodeSchema)
@bp.response(200, schemas.TokensSchema)
def oauth_sign_in(body: dict) -> dict:
    """Browser sign-in, second half: the OAuth2 `authCode` and the `state` from `/api/auth/oauth/start`."""
    try:
        state = _state_serializer().loads(body["state"], max_age=OAUTH_STATE_SECONDS)
    except SignatureExpired:
        raise ApiError("invalid_state", "登录已超时，请重新登录", status=401, field="state") from None
    except BadSignature:
        raise ApiError("invalid_state", "登录状态无效", status=401, field="state") from None
    nonce = request.cookies.get(OAUTH_COOKIE, "")
    if not hmac.compare_digest(str(state.get("n", "")).encode(), nonce.encode()):
        raise ApiError("invalid_state", "登录状态与本浏览器不符，请重新登录", status=401, field="state")
    return _tokens(service.sign_in_with_oauth_code(_settings(), body["code"]))


def _state_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_settings().secret_key, salt="workbench-oauth-state")


@bp.route("/auth/refresh", methods=["POST"])
@bp.arguments(schemas.RefreshSchema)
@bp.response(200, schemas.TokensSchema)
def refresh(body: dict) -> dict:
    """Rotate a refresh token: a new access token and a new refresh token; the old one stops working."""
    return _tokens(service.refresh(_settings(), body["refresh_token"]))


@bp.route("/auth/logout", methods=["POST"])
@bp.arguments(schemas.RefreshSchema)
@bp.response(204)
def logout(body: dict) -> None:
    """Sign out: the refresh token and every token rotated from it stop working (idempotent)."""
    service.sign_out(body["refresh_token"])


@bp.route("/me", methods=["GET"])
@login_required
@bp.response(200, schemas.MeSchema)
def me() -> dict:
    """The signed-in member, their positions (with level and layer) and their roles."""
    return service.me(current_principal())


@bp.route("/auth/grants", methods=["GET"])
@require_role("admin")
@bp.arguments(schemas.GrantArgsSchema, location="query")
@bp.response(200, schemas.GrantSchema(many=True))
def list_grants(args: dict) -> list:
    """Role grants on nodes inside the caller's subtree."""
    return list(db.session().scalars(service.list_grants(current_principal(), **args)))


@bp.route("/auth/grants", methods=["POST"])
@require_role("admin")
@bp.arguments(schemas.GrantInSchema)
@bp.response(201, schemas.GrantSchema)
def grant(body: dict):
    """Give a member a role over a node inside the caller's subtree (e.g. 转诊协调员 of a hospital's 转诊办)."""
    return service.grant_role(current_principal(), **body)


@bp.route("/auth/grants/<int:grant_id>", methods=["DELETE"])
@require_role("admin")
@bp.response(200, schemas.GrantSchema)
def revoke(grant_id: int):
    """Withdraw a grant (kept, marked revoked)."""
    return service.revoke_grant(current_principal(), grant_id)


@bp.route("/audit", methods=["GET"])
@require_role("admin")
@bp.arguments(schemas.AuditArgsSchema, location="query")
@bp.response(200, schemas.AuditPageSchema)
def audit_log(args: dict) -> dict:
    """The audit log within the caller's subtree (and the caller's own actions), newest first."""
    page, page_size = args.pop("page"), args.pop("page_size")
    items, total = db.paginate(audit.query(current_principal().scope("admin"), **args), page, page_size)
    return {"items": items, "total": total, "page": page, "page_size": page_size}


# -- sandbox only: pick anyone of the generated province and sign in as them -----------------------------------


@sandbox_bp.route("/members", methods=["GET"])
@sandbox_bp.arguments(schemas.SandboxMembersArgsSchema, location="query")
def sandbox_members(args: dict):
    """Members of the synced tree to sign in as (sandbox mode only), with where they work. `level` matches a
    position's node or, for a department (科室, 村卫生室), the unit directly above it."""
    session = db.session()
    parent = orm.aliased(OrgNode)
    positions_query = (
        sa.select(OrgMembership.member_id, OrgNode.name, OrgNode.level, parent.name, parent.level)
        .join(OrgNode, OrgNode.id == OrgMembership.node_id)
        .outerjoin(parent, parent.id == OrgNode.parent_id)
        .where(OrgNode.deleted_at.is_(None))
    )
    stmt = (
        sa.select(OrgMember)
        .where(OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
        .order_by(OrgMember.id)
        .limit(args["limit"])
    )
    if args["q"]:
        stmt = stmt.where(OrgMember.name.contains(args["q"], autoescape=True))
    if args["level"]:
        in_level = sa.or_(
            OrgNode.level == args["level"],
            sa.and_(OrgNode.level == "internal_department", parent.level == args["level"]),
        )
        member_ids = positions_query.where(in_level).with_only_columns(OrgMembership.member_id)
        stmt = stmt.where(OrgMember.id.in_(member_ids))
    members = list(session.scalars(stmt))
    positions: dict[int, list[dict]] = {}
    if members:
        rows = session.execute(positions_query.where(OrgMembership.member_id.in_([m.id for m in members])))
        for member_id, name, level, parent_name, _ in rows:
            unit = parent_name if level == "internal_department" and parent_name else name
            positions.setdefault(member_id, []).append({"name": name, "level": level, "unit_name": unit})
    items = [
        {"userid": m.userid, "name": m.name, "title": m.title, "positions": positions.get(m.id, [])} for m in members
    ]
    return jsonify({"items": items})


@sandbox_bp.route("/code", methods=["POST"])
@sandbox_bp.arguments(schemas.SandboxCodeSchema)
def sandbox_code(body: dict):
    """Mint a real single-use code at the sandbox, as `dd.requestAuthCode` (h5) or the OAuth page (oauth) would."""
    import requests

    base = _settings().dingtalk.oapi_base
    try:
        reply = requests.post(f"{base}/_sandbox/auth-code", json=body, timeout=5)
    except requests.RequestException:
        raise ApiError("sandbox_unavailable", "沙箱未启动或无法连接", status=503) from None
    if reply.status_code == 404:
        raise ApiError("not_found", f"成员 {body['userid']} 不存在", status=404, field="userid")
    if reply.status_code != 200:
        raise ApiError("sandbox_error", f"沙箱拒绝签发授权码（HTTP {reply.status_code}）", status=502)
    return jsonify({"code": reply.json()["code"], "kind": body["kind"]})
