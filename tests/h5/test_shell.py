"""The H5 shell's server side, without a browser: the page, what it injects, and how static files are served."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from tests.support.pages import page_config
from workbench import h5


def _app(tmp_path, **env):
    from config import load_settings
    from workbench import create_app

    app = create_app(load_settings({"WORKBENCH_VAR_DIR": str(tmp_path), **env}, read_dotenv=False))
    return app


def test_page_injects_the_dingtalk_app_and_guards_itself(tmp_path):
    app = _app(
        tmp_path,
        DINGTALK_APP_KEY="dingrealappkey",
        DINGTALK_APP_SECRET="app-secret-do-not-leak",
        DINGTALK_CORP_ID="dingcorp123",
        SECRET_KEY="a-real-secret-key-for-tests",
        PUBLIC_URL="https://workbench.example.cn",
    )
    reply = app.test_client().get("/h5/")
    assert reply.status_code == 200
    assert reply.mimetype == "text/html"
    html = reply.get_data(as_text=True)
    config = page_config(html)
    assert config["sandbox"] is False
    assert (config["corpId"], config["clientId"]) == ("dingcorp123", "dingrealappkey")
    assert [level["code"] for level in config["levels"]][2] == "county_bureau"
    assert "do-not-leak" not in html and "a-real-secret-key" not in html  # no credential reaches the page
    assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["Cache-Control"] == "no-cache"
    # No CDN: every script and stylesheet is on this server.
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html)
    assert re.search(r'<script src="/h5/static/app\.js\?v=[0-9a-f]{12}" defer>', html)


def test_sandbox_mode_and_missing_jsapi(tmp_path, monkeypatch):
    monkeypatch.setattr(h5, "VENDOR_JSAPI", "vendor/not-vendored.js")
    config = page_config(_app(tmp_path).test_client().get("/h5/").get_data(as_text=True))
    assert config["sandbox"] is True
    assert config["jsapi"] is None  # the page still renders; only the in-DingTalk path needs the jsapi


@pytest.mark.parametrize("accept", ["gzip, deflate, br", ""])
def test_static_files_are_versioned_and_compressed(tmp_path, accept):
    client = _app(tmp_path).test_client()
    src = re.search(r'<script src="([^"]*/app\.js[^"]*)"', client.get("/h5/").get_data(as_text=True)).group(1)
    reply = client.get(src, headers={"Accept-Encoding": accept})
    assert reply.status_code == 200
    assert "max-age=31536000" in reply.headers["Cache-Control"]  # the URL carries the content hash
    raw = (Path(h5.bp.static_folder) / "app.js").read_bytes()
    if accept:
        assert reply.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in reply.headers["Vary"]
        assert gzip.decompress(reply.data) == raw
        again = client.get(src, headers={"Accept-Encoding": accept, "If-None-Match": reply.headers["ETag"]})
        assert again.status_code == 304
    else:
        assert "Content-Encoding" not in reply.headers
        assert reply.data == raw
    # Unversioned URLs revalidate; paths outside the static folder are not served.
    assert "max-age=31536000" not in client.get("/h5/static/icons/referral.svg").headers.get("Cache-Control", "")
    assert client.get("/h5/static/../h5.py", headers={"Accept-Encoding": "gzip"}).status_code == 404
