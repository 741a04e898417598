"""The WSGI app `bench/api.py` loads into gunicorn: the real workbench (`create_app()`, configured from the
environment as in production) plus one bench-only route, `GET /_bench/constant`, a bare Flask endpoint that returns
a constant. It goes through the same server, workers, middleware and request logging as the API endpoints, so
the ratio of the two isolates what the endpoints themselves cost.

    gunicorn -c gunicorn.conf.py bench.api_wsgi:app
"""

from __future__ import annotations

from flask import jsonify

from workbench import create_app

app = create_app()
CONSTANT = {"status": "ok", "bench": "constant"}


@app.get("/_bench/constant")
def constant():
    return jsonify(CONSTANT)
