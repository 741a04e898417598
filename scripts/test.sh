#!/usr/bin/env bash
# `make test`: lint, then the suite against SQLite and against real PostgreSQL and Redis (started on loopback
# unless TEST_DATABASE_URL and TEST_REDIS_URL are given).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TEST_DATABASE_URL:-}" ] || [ -z "${TEST_REDIS_URL:-}" ]; then
  eval "$(bash scripts/test-services.sh)"
fi
# The browser test (tests/h5) drives Debian's Chromium through Playwright (which brings no browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq chromium >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
