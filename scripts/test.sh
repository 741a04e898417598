#!/usr/bin/env bash
# `make test`: lint, then the suite against SQLite and against real PostgreSQL and Redis (started on loopback
# unless TEST_DATABASE_URL and TEST_REDIS_URL are given).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TEST_DATABASE_URL:-}" ] || [ -z "${TEST_REDIS_URL:-}" ]; then
  eval "$(bash scripts/test-services.sh)"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
