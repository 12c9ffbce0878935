"""Engine and session factory: SQLite (WAL, busy timeout, ``BEGIN IMMEDIATE`` for writes) or
PostgreSQL by URL, upgraded to the newest Alembic revision on open.

SQLite's default deferred transactions fail at once (without waiting) when a reader upgrades to
a writer after another write committed; :func:`write_session` therefore starts write
transactions with ``BEGIN IMMEDIATE`` so concurrent submits queue on the busy timeout instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from medsynth.errors import ConfigError

#: SQLite busy timeout (ms): how long a writer waits for the lock before failing
SQLITE_BUSY_TIMEOUT_MS = 30_000

_WRITE_OPTION = "medsynth_write"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """Accept a bare file path as a SQLite database; return a SQLAlchemy URL string."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (SQLite in WAL mode, or any SQLAlchemy URL such as PostgreSQL).

    Raises:
        ConfigError: the URL does not parse or names an unknown driver.
    """
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError("db", f"not a database URL: {url} ({err})") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                parent = Path(database).parent
                if not parent.is_dir():
                    raise ConfigError("db", f"folder {parent} does not exist")
            engine = create_engine(
                url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
            )
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except ImportError as err:
        raise ConfigError("db", f"database driver missing for {parsed.drivername}: {err}") from None
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised through every test
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself (see below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def get_engine(url: str, upgrade: bool = True) -> Engine:
    """Shared engine per URL (one pool per process), migrated to the newest revision once."""
    url = normalise_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            if upgrade:
                upgrade_to_head(engine)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every shared engine (tests, shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction takes the write lock at once (SQLite) and commits on success."""
    with factory() as session:
        session.connection(execution_options={_WRITE_OPTION: True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextlib.contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A read-only session (its transaction is rolled back at the end)."""
    with factory() as session:
        yield session


def upgrade_to_head(engine: Engine) -> None:
    """Apply every Alembic migration in ``medsynth/study/migrations`` (idempotent).

    Raises:
        ConfigError: the database cannot be reached.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            if sqlite:
                # SQLite's ALTER goes through "copy, drop, rename" (Alembic batch mode): with foreign
                # keys on, dropping the old table would cascade-delete every row that refers to it.
                # The pragma only takes effect outside a transaction, hence the raw DB-API call.
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    cfg.attributes["connection"] = connection
                    command.upgrade(cfg, "head")
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise ConfigError("db", f"migration left {len(broken)} dangling references")
            finally:
                if sqlite:
                    connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
    except OperationalError as err:
        reason = " ".join(str(err.orig).split())[:200]
        raise ConfigError(
            "db", f"cannot open {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from None
