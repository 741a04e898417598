"""Fault injection: what a client meets on a bad day at DingTalk (gateway 5xx, "系统繁忙", hung responses).

Faults are decided before a handler runs, so a faulted call never has a side effect and a client may safely retry.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from sandbox.errors import api_error, oapi_error

KINDS = ("gateway", "busy", "timeout")

_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
)


class FaultInjector:
    """Decides, with probability `rate`, that a call fails, and answers as DingTalk's side would."""

    def __init__(self, rate: float, delay: float, seed: int) -> None:
        self.rate = rate
        self.delay = delay
        self.rng = random.Random(seed)

    def pick(self) -> str | None:
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return None
        return self.rng.choice(KINDS)

    async def respond(self, kind: str, new_api: bool) -> web.Response:
        if kind == "gateway":
            if new_api:
                return api_error(503, "operationTimeout", "服务暂时不可用，请稍后重试")
            return web.Response(status=502, text=_GATEWAY_HTML, content_type="text/html")
        if kind == "timeout":
            await asyncio.sleep(self.delay)
        if new_api:
            return api_error(500, "system.busy", "系统繁忙")
        return oapi_error(-1, "系统繁忙")
