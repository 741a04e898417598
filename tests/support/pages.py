"""What every app page is (the shell's `h5.app_page`): a static shell — no data in it, only its config as an inert
JSON block — under `script-src 'self'`, never cached itself, its scripts content-hashed, gzipped and cached for a
year."""

from __future__ import annotations

import json
import re

SHELL_SCRIPTS = ["session.js", "dom.js"]


def page_config(html: str) -> dict:
    """The page's config (the `wb-config` JSON block)."""
    found = re.search(r'<script type="application/json" id="wb-config">(.*?)</script>', html, re.S)
    assert found, "the page carries its config as an inert JSON block"
    return json.loads(found.group(1))


def static_shell(client, path: str, scripts: list[str]) -> tuple[str, dict]:
    """GET `path` and check it is a static shell loading the shell's scripts and then `scripts`, each hashed,
    gzipped and cached; the page's HTML and config."""
    reply = client.get(path)
    assert reply.status_code == 200, path
    assert "script-src 'self';" in reply.headers["Content-Security-Policy"]
    assert reply.headers["Cache-Control"] == "no-cache"
    html = reply.get_data(as_text=True)
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert [s.split("?")[0].rsplit("/", 1)[1] for s in sources] == SHELL_SCRIPTS + scripts, path
    for src in sources:
        assert re.search(r"\?v=[0-9a-f]{12}$", src), src
        got = client.get(src, headers={"Accept-Encoding": "gzip"})
        assert got.status_code == 200 and got.headers["Content-Encoding"] == "gzip"
        assert got.headers["Cache-Control"] == "public, max-age=31536000"
    assert "<script>" not in html, "no inline script under script-src 'self'"
    return html, page_config(html)
