"""`python -m sandbox`: generate the province, serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from aiohttp import web

from sandbox.app import create_app
from sandbox.settings import Settings, parse_settings


async def serve(settings: Settings, app: web.Application, summary: str) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    print(f"sandbox listening on {settings.base_url} ({summary})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from sandbox.province import generate

    started = time.monotonic()
    province = generate(settings.seed, settings.scale, settings.corp_id)
    logging.getLogger("sandbox").info("province generated in %.1fs", time.monotonic() - started)
    summary = f"scale={settings.scale}, {len(province.departments)} departments, {len(province.users)} users"
    app = create_app(settings, province)
    asyncio.run(serve(settings, app, summary))


if __name__ == "__main__":
    main()
