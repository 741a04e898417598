"""One set of Alembic migrations serves SQLite and PostgreSQL, and matches the models."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.conftest import migrate
from workbench.models import metadata


def test_migrations_match_the_models_and_downgrade_cleanly(app_env, backend, tmp_path):
    from config import load_settings

    url = load_settings(app_env, read_dotenv=False).database_url
    migrate(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"models and migrations differ on {backend}: {diff}"

    from alembic import command

    from workbench.cli import alembic_config

    command.downgrade(alembic_config(url), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
