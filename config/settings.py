"""Read the workbench's settings from the environment (a `.env` file is read if present).

Every variable has an embedded default so that a fresh checkout runs on SQLite, in-process jobs and the local
DingTalk sandbox. A malformed value stops start-up with a `ConfigError` naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ROOT = Path(__file__).resolve().parents[1]

# The sandbox reads the same variables with the same defaults, so the two work together out of the box.
SANDBOX_CREDENTIALS = {
    "DINGTALK_APP_KEY": "dingsandboxappkey001",
    "DINGTALK_APP_SECRET": "sandbox-app-secret-not-for-production",
    "DINGTALK_AGENT_ID": "3000000001",
    "DINGTALK_CORP_ID": "dingsandboxcorp00001",
    "DINGTALK_CALLBACK_TOKEN": "sandboxcallbacktoken",
    "DINGTALK_CALLBACK_AES_KEY": "c2FuZGJveC1jYWxsYmFjay1hZXMta2V5LTMyYnl0ZXM",
}
DEFAULT_SANDBOX_PORT = 8790
REAL_OAPI_BASE = "https://oapi.dingtalk.com"
REAL_API_BASE = "https://api.dingtalk.com"
DEV_SECRET_KEY = "dev-only-secret-key-change-me"
DEV_ADMIN_TOKEN = "dev-admin-token"
# Referral clocks (reference/domain.md §4.3; no national numbers exist, so each county may set its own).
REFERRAL_SLA_DEFAULTS = {
    "routine": timedelta(hours=24),
    "urgent": timedelta(hours=2),
    "green": timedelta(minutes=15),
    "down_ack": timedelta(hours=48),
    "first_follow_up": timedelta(days=7),
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


SANDBOX_SCENE_GROUP_TEMPLATE = "tpl-family-doctor-team"


@dataclass(frozen=True)
class DingTalkSettings:
    app_key: str
    app_secret: str
    agent_id: str
    corp_id: str
    callback_token: str
    callback_aes_key: str
    oapi_base: str
    api_base: str
    sandbox: bool  # True when no real app key is configured: the local sandbox stands in for DingTalk
    qps: int = 20
    api_qps: dict[str, int] = field(default_factory=dict)  # per-API overrides, keyed by path
    monthly_api_quota: int = 5000
    monthly_message_quota: int = 3000
    # The OA approval template (审批模板) approvals start by default; without one they go out as cards (§6).
    approval_process_code: str | None = None
    card_callback_type: str = "HTTP"  # how card clicks come back: HTTP callback or STREAM (§5)
    # The scene-group template (场景群模板, from the developer console) the family-doctor team chats are made from;
    # its robot must be the app's robot so group messages and cards can be posted (dingtalk.md §4.2). Unset with a
    # real app: the chats are not created (each team shows why) until it is configured.
    scene_group_template_id: str | None = None


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key: str
    dingtalk: DingTalkSettings
    admin_token: str | None = None  # the deploy-time operator credential (whole tree, every action audited)
    # Where people's DingTalk reaches this workbench: links in cards and messages must be absolute.
    public_url: str = "http://127.0.0.1:8000"
    jwt_keys: tuple[tuple[str, str], ...] = ()  # (key id, secret); the first signs, all verify (rotation)
    # Residents' field encryption and lookup-hash keys, (kid, 32 bytes), the first in use (workbench.privacy).
    field_keys: tuple[tuple[str, bytes], ...] = ()
    lookup_keys: tuple[tuple[str, bytes], ...] = ()
    jwt_issuer: str = "medcommunity-workbench"
    jwt_audience: str = "workbench"
    access_token_seconds: int = 15 * 60
    refresh_token_seconds: int = 30 * 86400
    audit_retention_days: int = 365
    event_retention_days: int = 30  # handled DingTalk events (their ids deduplicate retries) are kept this long
    message_retention_days: int = 90  # the bot's sent or failed messages and its cards are kept this long
    org_sync_max_delete_share: float = 0.05  # a sync that would delete more members or nodes stops and alerts
    org_sync_reconcile_seconds: int = 24 * 3600  # between reconciliations; 0 switches them off
    log_level: str = "INFO"
    instance_path: Path = ROOT / "var"
    referral_sla: dict[str, timedelta] = field(default_factory=lambda: dict(REFERRAL_SLA_DEFAULTS))


def load_settings(environ: Mapping[str, str] | None = None, *, read_dotenv: bool = True) -> Settings:
    """Build `Settings` from `environ` (default: `os.environ` plus `.env`)."""
    if environ is None:
        if read_dotenv:
            from dotenv import dotenv_values

            # Real environment variables win over the file, as with every 12-factor loader.
            env = {**dotenv_values(ROOT / ".env"), **os.environ}
            environ = {k: v for k, v in env.items() if v is not None}
        else:
            environ = os.environ
    env = {k: v for k, v in environ.items() if v != ""}

    instance_path = Path(env.get("WORKBENCH_VAR_DIR", ROOT / "var"))
    dingtalk = _dingtalk_settings(env)
    secret_key = env.get("SECRET_KEY")
    if secret_key is None:
        if not dingtalk.sandbox:
            raise ConfigError("SECRET_KEY", "must be set when a real DingTalk app is configured")
        secret_key = DEV_SECRET_KEY
    elif len(secret_key) < 16:
        raise ConfigError("SECRET_KEY", "must be at least 16 characters")

    admin_token = env.get("ADMIN_TOKEN", DEV_ADMIN_TOKEN if dingtalk.sandbox else None)
    if admin_token is not None and len(admin_token) < 12:
        raise ConfigError("ADMIN_TOKEN", "must be at least 12 characters")

    if "PUBLIC_URL" not in env and not dingtalk.sandbox:
        raise ConfigError("PUBLIC_URL", "must be set when a real DingTalk app is configured (links in cards, messages)")
    public_url = _http_base(env, "PUBLIC_URL", f"http://127.0.0.1:{env.get('PORT', '8000')}")

    retention = _non_negative_int(env, "AUDIT_RETENTION_DAYS", 365)
    if retention < 180:
        raise ConfigError("AUDIT_RETENTION_DAYS", "must be at least 180 (audit records are kept 180 days or more)")

    return Settings(
        database_url=_database_url(env.get("DATABASE_URL"), instance_path),
        redis_url=_redis_url(env.get("REDIS_URL")),
        secret_key=secret_key,
        dingtalk=dingtalk,
        admin_token=admin_token,
        public_url=public_url,
        jwt_keys=_jwt_keys(env.get("JWT_KEYS"), secret_key),
        field_keys=_binary_keys(env, "FIELD_KEYS"),
        lookup_keys=_binary_keys(env, "LOOKUP_KEYS"),
        jwt_issuer=env.get("JWT_ISSUER", "medcommunity-workbench"),
        jwt_audience=env.get("JWT_AUDIENCE", "workbench"),
        access_token_seconds=_positive_int(env, "ACCESS_TOKEN_SECONDS", 15 * 60),
        refresh_token_seconds=_positive_int(env, "REFRESH_TOKEN_SECONDS", 30 * 86400),
        audit_retention_days=retention,
        event_retention_days=_event_retention(env),
        message_retention_days=_message_retention(env),
        org_sync_max_delete_share=_share(env, "ORG_SYNC_MAX_DELETE_SHARE", 0.05),
        org_sync_reconcile_seconds=_non_negative_int(env, "ORG_SYNC_RECONCILE_SECONDS", 24 * 3600),
        log_level=_choice(env, "LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"}),
        instance_path=instance_path,
        referral_sla=_referral_sla(env.get("REFERRAL_SLA", "")),
    )


def _database_url(value: str | None, instance_path: Path) -> str:
    if value is None:
        return f"sqlite:///{instance_path / 'workbench.db'}"
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ConfigError("DATABASE_URL", f"not a database URL ({exc})") from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError("DATABASE_URL", "only sqlite:/// and postgresql:// URLs are supported")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    return url.render_as_string(hide_password=False)


def _redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"redis", "rediss", "unix"} or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError("REDIS_URL", "must look like redis://host:6379/0")
    return value


def _http_base(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path not in {"", "/"}:
        raise ConfigError(name, f"must be a base URL like https://host[:port], got {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(name, f"has a malformed port: {value!r}") from None
    return value


def _dingtalk_settings(env: Mapping[str, str]) -> DingTalkSettings:
    sandbox = "DINGTALK_APP_KEY" not in env
    if sandbox:
        env = {**SANDBOX_CREDENTIALS, **env}
        port = _positive_int(env, "SANDBOX_PORT", DEFAULT_SANDBOX_PORT)
        default_oapi = default_api = f"http://127.0.0.1:{port}"
    else:
        default_oapi, default_api = REAL_OAPI_BASE, REAL_API_BASE
        for name in ("DINGTALK_APP_SECRET", "DINGTALK_CORP_ID"):
            if name not in env:
                raise ConfigError(name, "must be set when DINGTALK_APP_KEY is set")

    aes_key = env.get("DINGTALK_CALLBACK_AES_KEY", "")
    if aes_key:
        _check_aes_key(aes_key)
    token = env.get("DINGTALK_CALLBACK_TOKEN", "")
    if token and not re.fullmatch(r"[A-Za-z0-9]{3,64}", token):
        raise ConfigError("DINGTALK_CALLBACK_TOKEN", "must be 3-64 letters and digits")

    return DingTalkSettings(
        app_key=env["DINGTALK_APP_KEY"],
        app_secret=env["DINGTALK_APP_SECRET"],
        agent_id=env.get("DINGTALK_AGENT_ID", ""),
        corp_id=env["DINGTALK_CORP_ID"],
        callback_token=token,
        callback_aes_key=aes_key,
        oapi_base=_http_base(env, "DINGTALK_OAPI_BASE", default_oapi),
        api_base=_http_base(env, "DINGTALK_API_BASE", default_api),
        sandbox=sandbox,
        qps=_positive_int(env, "DINGTALK_QPS", 20),
        api_qps=_api_qps(env.get("DINGTALK_API_QPS", "")),
        monthly_api_quota=_positive_int(env, "DINGTALK_MONTHLY_API_QUOTA", 5000),
        monthly_message_quota=_positive_int(env, "DINGTALK_MONTHLY_MESSAGE_QUOTA", 3000),
        approval_process_code=_process_code(env.get("DINGTALK_APPROVAL_PROCESS_CODE")),
        card_callback_type=_choice(env, "DINGTALK_CARD_CALLBACK_TYPE", "HTTP", {"HTTP", "STREAM"}),
        scene_group_template_id=env.get(
            "DINGTALK_SCENE_GROUP_TEMPLATE_ID", SANDBOX_SCENE_GROUP_TEMPLATE if sandbox else None
        ),
    )


def _check_aes_key(value: str) -> None:
    if len(value) != 43:
        raise ConfigError("DINGTALK_CALLBACK_AES_KEY", f"must be 43 characters, got {len(value)}")
    try:
        key = base64.b64decode(value + "=", validate=True)
    except binascii.Error:
        raise ConfigError("DINGTALK_CALLBACK_AES_KEY", "must be base64 characters (A-Z a-z 0-9 + /)") from None
    if len(key) != 32:
        raise ConfigError("DINGTALK_CALLBACK_AES_KEY", "must decode to a 32-byte AES key")


def _api_qps(value: str) -> dict[str, int]:
    """Parse `DINGTALK_API_QPS="/topapi/v2/user/list=40,/v1.0/robot/oToMessages/batchSend=10"`."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        path, sep, qps = item.rpartition("=")
        if not sep or not path.startswith("/") or not qps.isdigit() or int(qps) < 1:
            raise ConfigError("DINGTALK_API_QPS", f"expected /api/path=QPS pairs separated by commas, got {item!r}")
        limits[path] = int(qps)
    return limits


def _referral_sla(value: str) -> dict[str, timedelta]:
    """Parse `REFERRAL_SLA="routine=24h,urgent=2h,green=15m"`: any subset of the clocks, each a positive number
    of s/m/h/d; the others keep their defaults."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    sla = dict(REFERRAL_SLA_DEFAULTS)
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, span = item.partition("=")
        match = re.fullmatch(r"([1-9][0-9]*)([smhd])", span.strip())
        if name.strip() not in sla or match is None:
            raise ConfigError(
                "REFERRAL_SLA",
                f"expected name=<number><s|m|h|d> pairs ({', '.join(REFERRAL_SLA_DEFAULTS)}), got {item!r}",
            )
        sla[name.strip()] = timedelta(**{units[match.group(2)]: int(match.group(1))})
    return sla


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(name, f"must be a positive integer, got {raw!r}")
    return int(raw)


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise ConfigError(name, f"must be a whole number of seconds, got {raw!r}")
    return int(raw)


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ConfigError(name, f"must be a fraction between 0 and 1 (0.05 = 5%), got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: set[str]) -> str:
    value = env.get(name, default).upper()
    if value not in allowed:
        raise ConfigError(name, f"must be one of {', '.join(sorted(allowed))}")
    return value


def _process_code(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"PROC-[A-Za-z0-9_-]+", value):
        raise ConfigError(
            "DINGTALK_APPROVAL_PROCESS_CODE",
            "expected DingTalk's process code: PROC- followed by letters, digits, - or _",
        )
    return value


def _event_retention(env: Mapping[str, str]) -> int:
    days = _positive_int(env, "EVENT_RETENTION_DAYS", 30)
    if days < 7:
        raise ConfigError("EVENT_RETENTION_DAYS", "must be at least 7 (DingTalk retries an event for days)")
    return days


def _message_retention(env: Mapping[str, str]) -> int:
    days = _positive_int(env, "MESSAGE_RETENTION_DAYS", 90)
    if days < 30:
        raise ConfigError(
            "MESSAGE_RETENTION_DAYS", "must be at least 30 (administrators look into failed deliveries for weeks)"
        )
    return days


def _binary_keys(env: Mapping[str, str], name: str) -> tuple[tuple[str, bytes], ...]:
    """`FIELD_KEYS=kid2:<base64 of 32 random bytes>,kid1:…` (e.g. `openssl rand -base64 32`): the first key is
    used, every key reads. `v1` is reserved for the key derived from SECRET_KEY."""
    value = env.get(name)
    if value is None:
        return ()
    keys: list[tuple[str, bytes]] = []
    for item in value.split(","):
        kid, sep, encoded = item.strip().partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", kid) or kid == "v1":
            raise ConfigError(name, "expected kid:base64key pairs separated by commas (kid: [A-Za-z0-9._-], not v1)")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ConfigError(name, f"the key {kid!r} is not base64") from None
        if len(key) != 32:
            raise ConfigError(name, f"the key {kid!r} must decode to 32 bytes (openssl rand -base64 32)")
        keys.append((kid, key))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ConfigError(name, "key ids must be unique")
    return tuple(keys)


def _jwt_keys(value: str | None, secret_key: str) -> tuple[tuple[str, str], ...]:
    """`JWT_KEYS=kid2:secret2,kid1:secret1`: the first key signs, every key verifies, so a new key can be put
    first and the old one dropped after the longest access token has expired. Default: one key from SECRET_KEY."""
    if value is None:
        derived = hmac.new(secret_key.encode(), b"workbench-jwt", hashlib.sha256).hexdigest()
        return (("k1", derived),)
    keys: list[tuple[str, str]] = []
    for item in value.split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", kid):
            raise ConfigError("JWT_KEYS", "expected kid:secret pairs separated by commas (kid: letters, digits, ._-)")
        if len(secret) < 32:
            raise ConfigError("JWT_KEYS", f"the secret of key {kid!r} must be at least 32 characters")
        keys.append((kid, secret))
    if len({kid for kid, _ in keys}) != len(keys):
        raise ConfigError("JWT_KEYS", "key ids must be unique")
    return tuple(keys)
