"""The WSGI entry: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

import sys

from config import ConfigError
from workbench import create_app

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")
