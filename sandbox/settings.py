"""Command-line and environment settings of the sandbox.

Credentials come from the same `DINGTALK_*` variables as the product, with identical defaults, so that a
freshly cloned workbench and sandbox talk to each other without any configuration.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

SCALES = ("small", "county", "city", "province")
EVENT_MODES = ("auto", "http", "stream")


DEFAULT_CREDENTIALS = {
    "DINGTALK_APP_KEY": "dingsandboxappkey001",
    "DINGTALK_APP_SECRET": "sandbox-app-secret-not-for-production",
    "DINGTALK_AGENT_ID": "3000000001",
    "DINGTALK_CORP_ID": "dingsandboxcorp00001",
    "DINGTALK_CALLBACK_TOKEN": "sandboxcallbacktoken",
    "DINGTALK_CALLBACK_AES_KEY": "c2FuZGJveC1jYWxsYmFjay1hZXMta2V5LTMyYnl0ZXM",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the running sandbox needs to know about itself and the app it serves."""

    host: str = "127.0.0.1"
    port: int = 8790
    seed: int = 1
    scale: str = "small"
    qps: int = 20
    fault_rate: float = 0.0
    fault_delay: float = 12.0
    latency: float = 0.0  # seconds added to every API call: the network between a deployment and DingTalk
    token_ttl: int = 7200
    callback_url: str = "http://127.0.0.1:8000/dingtalk/callback"
    events: str = "auto"
    retry_delays: tuple[float, ...] = (10.0, 30.0)
    app_key: str = "dingsandboxappkey001"
    app_secret: str = "sandbox-app-secret-not-for-production"
    agent_id: str = "3000000001"
    corp_id: str = "dingsandboxcorp00001"
    callback_token: str = "sandboxcallbacktoken"
    aes_key: str = "c2FuZGJveC1jYWxsYmFjay1hZXMta2V5LTMyYnl0ZXM"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def _delays(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seconds: {text!r}") from exc


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Parse the command line; every option falls back to its environment variable, then to the default."""
    default_callback = f"http://127.0.0.1:{_env('PORT', '8000')}/dingtalk/callback"
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="本地钉钉开放平台沙箱")
    parser.add_argument("--host", default=_env("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("SANDBOX_PORT", "8790")))
    parser.add_argument("--seed", type=int, default=int(_env("SANDBOX_SEED", "1")))
    parser.add_argument("--scale", choices=SCALES, default=_env("SANDBOX_SCALE", "small"))
    parser.add_argument("--qps", type=int, default=int(_env("SANDBOX_QPS", "20")))
    parser.add_argument("--fault-rate", type=float, default=float(_env("SANDBOX_FAULT_RATE", "0.0")))
    parser.add_argument(
        "--fault-delay",
        type=float,
        default=float(_env("SANDBOX_FAULT_DELAY", "12")),
        help="seconds a 'timeout' fault holds the response",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=float(_env("SANDBOX_LATENCY", "0")),
        help="seconds every API call takes on the way (loopback answers in about a millisecond; DingTalk does not)",
    )
    parser.add_argument("--token-ttl", type=int, default=int(_env("SANDBOX_TOKEN_TTL", "7200")))
    parser.add_argument("--callback-url", default=_env("WORKBENCH_CALLBACK_URL", default_callback))
    parser.add_argument("--events", choices=EVENT_MODES, default=_env("SANDBOX_EVENTS", "auto"))
    parser.add_argument(
        "--retry-delays",
        type=_delays,
        default=_delays(_env("SANDBOX_RETRY_DELAYS", "10,30")),
        help="seconds before each redelivery of a failed event (DingTalk: 10,30)",
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        parser.error("--fault-rate must be between 0 and 1")
    if not 0 <= args.latency <= 60:  # also refuses nan
        parser.error("--latency must be between 0 and 60 seconds")
    if args.qps < 1:
        parser.error("--qps must be at least 1")
    if args.token_ttl < 1:
        parser.error("--token-ttl must be at least 1 second")
    aes_key = _env("DINGTALK_CALLBACK_AES_KEY", DEFAULT_CREDENTIALS["DINGTALK_CALLBACK_AES_KEY"])
    if len(aes_key) != 43:
        parser.error(f"DINGTALK_CALLBACK_AES_KEY must be 43 characters, got {len(aes_key)}")
    return Settings(
        host=args.host,
        port=args.port,
        seed=args.seed,
        scale=args.scale,
        qps=args.qps,
        fault_rate=args.fault_rate,
        fault_delay=args.fault_delay,
        latency=args.latency,
        token_ttl=args.token_ttl,
        callback_url=args.callback_url,
        events=args.events,
        retry_delays=args.retry_delays,
        app_key=_env("DINGTALK_APP_KEY", DEFAULT_CREDENTIALS["DINGTALK_APP_KEY"]),
        app_secret=_env("DINGTALK_APP_SECRET", DEFAULT_CREDENTIALS["DINGTALK_APP_SECRET"]),
        agent_id=_env("DINGTALK_AGENT_ID", DEFAULT_CREDENTIALS["DINGTALK_AGENT_ID"]),
        corp_id=_env("DINGTALK_CORP_ID", DEFAULT_CREDENTIALS["DINGTALK_CORP_ID"]),
        callback_token=_env("DINGTALK_CALLBACK_TOKEN", DEFAULT_CREDENTIALS["DINGTALK_CALLBACK_TOKEN"]),
        aes_key=aes_key,
    )
