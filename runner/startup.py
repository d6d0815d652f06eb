"""Opening the ledger for a service: every reason not to start is found here, before anything
listens, and said in one line with what to do (a `StartupError`), never as a traceback.

In order, for SQLite: the ledger's folder is usable, the file is private (0600) and writable,
no other service holds it (an exclusive lock on the file itself, whatever path or URL names it:
one scheduler per SQLite ledger).
For PostgreSQL (PAX_DATABASE_URL): the driver is installed and the server answers; any number of
services may share it. Then: the schema is current, and the tokens are sound.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy.engine import Engine

from runner.auth import TokenError, load_or_create_token
from runner.ledger.db import database_url, make_engine, redacted, sqlite_path, upgrade
from runner.settings import Settings


class StartupError(RuntimeError):
    """The service cannot start; the message is one line saying why and what to do."""


@dataclass
class Opened:
    engine: Engine
    admin_token: str
    worker_token: str
    lock: object  # the lock file, held open for the service's lifetime (None: PostgreSQL)

    def close(self) -> None:
        self.engine.dispose()
        if self.lock is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()


def _folder(db: Path) -> None:
    for parent in [db.parent, *db.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise StartupError(
                    f"--db {db}: {parent} is a file, not a folder; choose a ledger path in a "
                    "folder (e.g. --db var/pax.db)"
                )
            break
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError(
            f"--db {db}: cannot create {db.parent} ({e.strerror}); choose a folder you can write"
        ) from None
    if not os.access(db.parent, os.W_OK):
        raise StartupError(
            f"--db {db}: the folder {db.parent} is not writable (SQLite keeps its journal "
            "beside the ledger); choose a writable folder or fix its permissions"
        )


def _lock(db: Path):
    """Hold the ledger: an exclusive flock on the ledger file itself, so the lock is keyed on
    the file (its device and inode), not on the path that named it: a symlink, a hard link or
    a URL with options to the same file finds it held. (SQLite's own locks are POSIX record
    locks, which flock does not touch.) `<real path>.lock` says who holds it."""
    real = db.resolve()
    f = open(real, "rb")  # noqa: SIM115 - held open for the service's lifetime
    note = real.with_name(real.name + ".lock")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        holder = note.read_text().strip() if note.is_file() else "another process"
        raise StartupError(
            f"--db {db}: the ledger is in use by {holder} (the file {real}); stop that service, "
            "or give this one its own --db (several services share a ledger on PostgreSQL)"
        ) from None
    with contextlib.suppress(OSError):
        note.write_text(f"pax serve, pid {os.getpid()}\n")
    return f


def _private(db: Path) -> None:
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite copies this mode to
    else:  # its -wal and -shm files
        with contextlib.suppress(PermissionError):
            os.chmod(db, 0o600)
    if not os.access(db, os.W_OK):
        raise StartupError(
            f"--db {db}: the ledger is read-only; make it writable (chmod u+w) or serve a copy"
        )


def _server(url: str) -> None:
    """Migrate a server's ledger, or say in one line why it cannot be reached."""
    scheme = database_url(url).split("://", 1)[0].split("+", 1)[0]
    if scheme != "postgresql":
        raise StartupError(
            f"PAX_DATABASE_URL {redacted(url)}: pax keeps its ledger in SQLite or PostgreSQL, "
            f"not {scheme}; use postgresql://user:password@host:5432/pax, or --db PATH for "
            "a SQLite file"
        )
    try:
        upgrade(url)
    except ModuleNotFoundError as e:
        raise StartupError(
            f"PAX_DATABASE_URL {redacted(url)}: its driver is not installed ({e.name}); "
            "pip install 'parameter-allocation-experiments[postgres]'"
        ) from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError) as e:
        said = str(getattr(e, "orig", e)).strip().splitlines()[0]
        raise StartupError(
            f"PAX_DATABASE_URL {redacted(url)}: cannot open the ledger ({said}); check that the "
            "server is up, the database exists and the user may create tables in it"
        ) from None
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:  # e.g. a port that is no number
        raise StartupError(
            f"PAX_DATABASE_URL {redacted(url)}: not a database URL ({e}); use e.g. "
            "postgresql://user:password@host:5432/pax"
        ) from None


def open_ledger(settings: Settings) -> Opened:
    db = sqlite_path(settings.ledger)
    lock = None
    if db is None:
        _server(settings.ledger)
    else:
        _folder(db)
        _private(db)  # the file exists from here: it is what the lock holds
        lock = _lock(db)
    try:
        if db is not None:
            try:
                upgrade(db)
            except sqlalchemy.exc.OperationalError as e:
                raise StartupError(
                    f"--db {db}: cannot migrate the ledger "
                    f"({e.orig if hasattr(e, 'orig') else e}); "
                    "check that it is a pax ledger on a writable disk"
                ) from None
        db = db or Path(settings.db)  # PostgreSQL: the token files live beside PAX_DB
        try:
            admin = load_or_create_token(db, settings.admin_token, "admin")
            worker = load_or_create_token(db, settings.worker_token, "worker")
        except TokenError as e:
            raise StartupError(str(e)) from None
        if admin == worker:
            raise StartupError("PAX_WORKER_TOKEN equals the admin token: give workers their own")
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    return Opened(
        engine=make_engine(settings.ledger), admin_token=admin, worker_token=worker, lock=lock
    )
