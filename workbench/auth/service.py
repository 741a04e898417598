"""Sign-in and sign-out, refresh rotation, and role grants. Plain functions: no Flask request.

Free-login (`reference/dingtalk.md` §7): inside DingTalk a JSAPI code is exchanged through
`topapi/v2/user/getuserinfo`; in a browser the OAuth2 code goes through `/v1.0/oauth2/userAccessToken` and
`/v1.0/contact/users/me`, whose unionId maps to a userid through `topapi/user/getbyunionid`. Either way the person
must be an active member of the synced tree; one who is not yet there (a new hire whose event is still queued) is
fetched and applied on the spot.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from config import Settings
from org_sync import apply
from org_sync.models import OrgMember, OrgNode
from workbench import audit, db
from workbench.auth.models import RefreshToken, RoleGrant
from workbench.auth.principal import GRANTABLE_ROLES, ROLES, Principal, load_principal
from workbench.auth.tokens import hash_refresh_token, issue_access_token, new_refresh_token
from workbench.db import utcnow
from workbench.dingtalk.errors import DingTalkError
from workbench.errors import ApiError

INVALID_CODE_ERRCODES = {"40078", "40079", "40080"}  # 不存在的临时授权码 and its expired/used variants
INVALID_OAUTH_CODES = {"invalidParameter.authCode", "invalidAuthCode", "InvalidAuthCode"}


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


# -- sign-in ----------------------------------------------------------------------------------------------------


def sign_in_with_jsapi_code(settings: Settings, code: str) -> Tokens:
    """Exchange a `dd.requestAuthCode` code (single-use, 5 minutes) for workbench tokens."""
    from workbench.dingtalk import get_gateway

    try:
        info = get_gateway().oapi("/topapi/v2/user/getuserinfo", {"code": code})["result"]
    except DingTalkError as exc:
        if exc.code in INVALID_CODE_ERRCODES:
            audit.record(None, "auth.login", outcome="denied", detail={"reason": "invalid_code", "via": "jsapi"})
            raise ApiError(
                "invalid_code", "免登授权码无效、已使用或已过期，请重新进入应用", status=401, field="code"
            ) from None
        raise
    return _sign_in(settings, settings.dingtalk.corp_id, str(info["userid"]), client="h5")


def sign_in_with_oauth_code(settings: Settings, code: str) -> Tokens:
    """Exchange a browser OAuth2 code: user token → `/contact/users/me` (no userid there) → userid by unionId."""
    from alibabacloud_dingtalk.oauth2_1_0 import models as oauth_models

    from workbench.dingtalk import get_gateway

    gateway = get_gateway()
    request = oauth_models.GetUserTokenRequest(
        client_id=settings.dingtalk.app_key,
        client_secret=settings.dingtalk.app_secret,
        code=code,
        grant_type="authorization_code",
    )
    try:
        user_token = gateway.api("oauth2_1_0", "get_user_token", request).access_token
    except DingTalkError as exc:
        if exc.code in INVALID_OAUTH_CODES:
            audit.record(None, "auth.login", outcome="denied", detail={"reason": "invalid_code", "via": "oauth"})
            raise ApiError(
                "invalid_code", "登录授权码无效、已使用或已过期，请重新扫码登录", status=401, field="code"
            ) from None
        raise
    profile = gateway.api("contact_1_0", "get_user", path_params=("me",), user_token=user_token)
    try:
        found = gateway.oapi("/topapi/user/getbyunionid", {"unionid": profile.union_id})["result"]
    except DingTalkError as exc:
        if exc.code == "60121":  # a DingTalk account outside this organisation
            raise ApiError("not_a_member", "该钉钉账号不属于本组织，无法登录工作台", status=403) from None
        raise
    return _sign_in(settings, settings.dingtalk.corp_id, str(found["userid"]), client="browser")


def _sign_in(settings: Settings, corp_id: str, userid: str, *, client: str) -> Tokens:
    session = db.session()
    member = _current_member(session, corp_id, userid)
    principal = load_principal(session, member.id) if member else None
    if member is None or principal is None:
        audit.record(None, "auth.login", outcome="denied", detail={"reason": "inactive", "userid": userid})
        raise ApiError("account_inactive", "账号已停用或不在组织架构中，请联系管理员", status=403)
    tokens = _issue(settings, session, member, family=secrets.token_hex(16), client=client)
    audit.record(principal, "auth.login", resource_type="member", resource_id=member.id, detail={"via": client})
    session.commit()
    return tokens


def _current_member(session: orm.Session, corp_id: str, userid: str) -> OrgMember | None:
    """The stored member, fetched from DingTalk and applied first when missing or not live."""
    member = session.scalar(sa.select(OrgMember).where(OrgMember.corp_id == corp_id, OrgMember.userid == userid))
    if member is None or member.deleted_at is not None or not member.active:
        member = apply.sync_user(corp_id, userid, event_id=None)
        session.commit()
    if member is None or member.deleted_at is not None or not member.active:
        return None
    return member


def _issue(settings: Settings, session: orm.Session, member: OrgMember, *, family: str, client: str) -> Tokens:
    refresh, digest = new_refresh_token()
    now = utcnow()
    session.add(
        RefreshToken(
            token_hash=digest,
            family=family,
            member_id=member.id,
            issued_at=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_seconds),
            client=client,
        )
    )
    access = issue_access_token(settings, member_id=member.id, corp_id=member.corp_id, userid=member.userid)
    return Tokens(access, refresh, settings.access_token_seconds)


# -- refresh and sign-out ---------------------------------------------------------------------------------------


def refresh(settings: Settings, refresh_token: str) -> Tokens:
    """Rotate: the presented token is replaced by a new one of the same family. A token presented after it was
    replaced means two parties hold it, so the family is revoked and both must sign in again."""
    session = db.session()
    row = session.scalar(
        sa.select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(refresh_token)).with_for_update()
    )
    now = utcnow()
    if row is None:
        raise _bad_refresh("续期令牌无效")
    if row.revoked_at is not None:
        raise _bad_refresh("续期令牌已被注销，请重新登录")
    if row.replaced_at is not None:
        revoked = _revoke_family(session, row.family, now)
        audit.record(
            None,
            "auth.refresh_reuse",
            resource_type="member",
            resource_id=row.member_id,
            outcome="denied",
            detail={"family_tokens_revoked": revoked},
            session=session,
        )
        session.commit()
        raise _bad_refresh("续期令牌已被使用过，为安全起见本次登录已全部注销，请重新登录")
    if row.expires_at <= now:
        raise _bad_refresh("续期令牌已过期，请重新登录")
    member = session.get(OrgMember, row.member_id)
    if member is None or load_principal(session, member.id) is None:
        _revoke_family(session, row.family, now)
        session.commit()
        raise ApiError("account_inactive", "账号已停用或已离职，请联系管理员", status=401)
    row.replaced_at = now
    tokens = _issue(settings, session, member, family=row.family, client=row.client or "h5")
    session.commit()
    return tokens


def sign_out(refresh_token: str, principal: Principal | None = None) -> bool:
    """Revoke the sign-in (the refresh token's whole family). Unknown tokens are fine: signing out is idempotent."""
    session = db.session()
    row = session.scalar(sa.select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(refresh_token)))
    if row is None:
        return False
    revoked = _revoke_family(session, row.family, utcnow())
    audit.record(
        principal,
        "auth.logout",
        resource_type="member",
        resource_id=row.member_id,
        detail={"revoked": revoked},
        session=session,
    )
    session.commit()
    return True


def _revoke_family(session: orm.Session, family: str, now: Any) -> int:
    result = session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount


def _bad_refresh(message: str) -> ApiError:
    return ApiError("invalid_refresh_token", message, status=401, field="refresh_token")


# -- the signed-in member ---------------------------------------------------------------------------------------


def me(principal: Principal) -> dict[str, Any]:
    """The member, their positions with level and layer, and their roles (what `GET /api/me` shows)."""
    if principal.operator:
        return {
            "member": None,
            "operator": True,
            "positions": [],
            "roles": [{"code": "operator", "name": "运维管理员"}],
        }
    session = db.session()
    member = session.get(OrgMember, principal.member_id)
    names = _node_names(session, {role.node_id for role in principal.roles})
    return {
        "operator": False,
        "member": {
            "id": member.id,
            "corp_id": member.corp_id,
            "userid": member.userid,
            "name": member.name,
            "title": member.title,
            "job_number": member.job_number,
            "mobile": member.mobile_masked,
        },
        "positions": [dataclasses.asdict(position) for position in principal.positions],
        "roles": [
            {
                "code": role.code,
                "name": ROLES.get(role.code, role.code),
                "node_id": role.node_id,
                "node_name": names.get(role.node_id),
                "source": role.source,
                "grant_id": role.grant_id,
            }
            for role in principal.roles
        ],
    }


def _node_names(session: orm.Session, node_ids: set[int]) -> dict[int, str]:
    if not node_ids:
        return {}
    return dict(session.execute(sa.select(OrgNode.id, OrgNode.name).where(OrgNode.id.in_(node_ids))).all())


# -- role grants ------------------------------------------------------------------------------------------------


def grant_role(principal: Principal, *, userid: str, role: str, node_id: int, note: str | None = None) -> RoleGrant:
    """An administrator gives a member a role over a node inside the administrator's own subtree."""
    if role not in GRANTABLE_ROLES:
        raise ApiError("validation_error", f"不能授予角色 {role}", status=422, field="role")
    session = db.session()
    scope = principal.scope("admin")
    node = scope.require_node(session.get(OrgNode, node_id))
    if node.deleted_at is not None:
        raise ApiError("not_found", "组织节点不存在", status=404, field="node_id")
    member = session.scalar(
        sa.select(OrgMember).where(
            OrgMember.corp_id == node.corp_id, OrgMember.userid == userid, OrgMember.deleted_at.is_(None)
        )
    )
    if member is None:
        raise ApiError("not_found", f"成员 {userid} 不存在", status=404, field="userid")
    existing = session.scalar(
        sa.select(RoleGrant).where(
            RoleGrant.member_id == member.id,
            RoleGrant.role == role,
            RoleGrant.node_id == node.id,
            RoleGrant.revoked_at.is_(None),
        )
    )
    if existing is not None:
        return existing  # granting twice is the same grant
    grant = RoleGrant(member_id=member.id, role=role, node_id=node.id, note=note, granted_by=principal.actor)
    session.add(grant)
    session.flush()
    audit.record(
        principal,
        "auth.grant",
        resource_type="role_grant",
        resource_id=grant.id,
        node_id=node.id,
        detail={"member_id": member.id, "role": role},
        session=session,
    )
    session.commit()
    return grant


def revoke_grant(principal: Principal, grant_id: int) -> RoleGrant:
    session = db.session()
    grant = session.get(RoleGrant, grant_id)
    node = session.get(OrgNode, grant.node_id) if grant else None
    if grant is None or node is None or not principal.scope("admin").covers_path(node.path):
        raise ApiError("not_found", "授权记录不存在", status=404)
    if grant.revoked_at is None:
        grant.revoked_at, grant.revoked_by = utcnow(), principal.actor
        audit.record(
            principal,
            "auth.revoke",
            resource_type="role_grant",
            resource_id=grant.id,
            node_id=node.id,
            detail={"member_id": grant.member_id, "role": grant.role},
            session=session,
        )
        session.commit()
    return grant


def list_grants(principal: Principal, *, node_id: int | None = None, include_revoked: bool = False) -> sa.Select:
    """Grants on nodes inside the administrator's subtree (optionally one node's)."""
    stmt = sa.select(RoleGrant).where(principal.scope("admin").nodes(RoleGrant.node_id))
    if node_id is not None:
        stmt = stmt.where(RoleGrant.node_id == node_id)
    if not include_revoked:
        stmt = stmt.where(RoleGrant.revoked_at.is_(None))
    return stmt.order_by(RoleGrant.id)
