"""The database: one SQLAlchemy engine per app, a scoped session per thread, typed 2.0 models.

Models subclass `Model`; Alembic (migrations/) owns the schema, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy import event, orm
from sqlalchemy.dialects import postgresql

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Model(orm.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    # JSON everywhere: JSONB on PostgreSQL (indexable), JSON text on SQLite.
    type_annotation_map: ClassVar = {dict: sa.JSON().with_variant(postgresql.JSONB(), "postgresql")}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use workbench.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Database:
    """Engine and sessions of one app, kept in `app.extensions["workbench.db"]`."""

    def __init__(self, url: str) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        self.engine = sa.create_engine(
            url,
            pool_pre_ping=not sqlite,
            # SQLite: one file shared by the web threads and in-process jobs; wait instead of failing on a lock.
            connect_args={"timeout": 30, "check_same_thread": False} if sqlite else {},
        )
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.session = orm.scoped_session(orm.sessionmaker(bind=self.engine, expire_on_commit=False))

    def dispose(self) -> None:
        self.session.remove()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.database_url.startswith("sqlite:///"):
        settings.instance_path.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    app.extensions["workbench.db"] = database
    app.teardown_appcontext(lambda _exc: database.session.remove())


def get_db() -> Database:
    return current_app.extensions["workbench.db"]


def paginate(
    query: sa.Select, page: int, page_size: int, *, rows: bool = False, db_session: orm.Session | None = None
) -> tuple[list, int]:
    """One page of `query` (already ordered) and the total it has without paging: entities, or whole result
    rows with `rows=True`."""
    db_session = db_session or session()
    total = db_session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    paged = query.limit(page_size).offset((page - 1) * page_size)
    return list(db_session.execute(paged).all() if rows else db_session.scalars(paged)), total


def session() -> orm.Session:
    """The current thread's session of the current app."""
    return get_db().session()
