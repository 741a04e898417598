"""The aiohttp application key under which the sandbox keeps its state (separate to avoid import cycles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from sandbox.state import SandboxState

STATE: web.AppKey[SandboxState] = web.AppKey("sandbox_state")


def state_of(request: web.Request) -> SandboxState:
    return request.app[STATE]
