"""Browser tests of the mini apps' H5 pages: `tree_app` served on a free loopback port (`live`), and Chromium pages
at phone and desktop sizes that fail the test on any JavaScript error (`phone`, `desk`). Test modules import the
fixtures they use, with the shell's `browser` (tests/h5/test_browser.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.h5.test_browser import TIMEOUT_MS, browser  # noqa: F401  (a fixture the ones below use)


@pytest.fixture
def live(tree_app) -> Iterator[str]:
    """`tree_app`, with whatever the test wrote into it, served on a free loopback port."""
    server = make_server("127.0.0.1", 0, tree_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="h5-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def window(browser, width: int, height: int) -> Iterator[object]:  # noqa: F811
    """A page in a new context of that size (Chinese locale, no service workers, downloads allowed); the test
    fails if the page threw."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, locale="zh-CN", service_workers="block", accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def phone(browser) -> Iterator[object]:  # noqa: F811
    yield from window(browser, 375, 760)


@pytest.fixture
def desk(browser) -> Iterator[object]:  # noqa: F811
    yield from window(browser, 1280, 860)
