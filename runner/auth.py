"""The service's tokens and who a token makes its caller: the admin token (every mutating
user route), the worker token (`/claim` only) and each run's own token (its trainer-facing
routes; only its hash is stored). The admin token is PAX_ADMIN_TOKEN and the worker token
PAX_WORKER_TOKEN, or each a file beside the ledger that the first start generates (mode 0600,
written under a temporary name and renamed, so a crash never leaves an empty file). A token
file that is empty, short or readable by others is refused at start-up with what to do, never
used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import sys
from pathlib import Path

MIN_TOKEN = 16
ADMIN, WORKER, RUN = "admin", "worker", "run"


class TokenError(ValueError):
    """A token that must not be used; the message says what to do."""


def token_file(db: Path | str, kind: str = "admin") -> Path:
    db = Path(db)
    return db.with_name(db.name + f".{kind}_token")


def check_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN:
        raise TokenError(
            f"{where} is shorter than {MIN_TOKEN} characters: use a long random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if not token.isascii() or not token.isprintable() or " " in token:
        raise TokenError(f"{where} must be printable ASCII without spaces (a token_urlsafe value)")
    return token


def read_token_file(path: Path) -> str:
    """The token in `path`, after checking the file is private and the token usable."""
    if not path.is_file():
        raise TokenError(
            f"{path} is a {'folder' if path.is_dir() else 'special file'}, not a token file: "
            "remove it (a new token is then generated there), or write a token into a file"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            f"{path} is readable by others (mode {mode:o}): run `chmod 600 {path}` and start again"
        )
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenError(f"{path}: cannot read it ({e}); fix its owner or mode (0600)") from None
    if not token:
        raise TokenError(
            f"{path} is empty (a crash while it was written?): delete it to have a new token "
            "generated, or write one into it"
        )
    return check_token(token, str(path))


def write_token_file(path: Path) -> str:
    """A new token in `path`: mode 0600 from the start, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return token


def load_or_create_token(db: Path | str, configured: str | None, kind: str = "admin") -> str:
    """The configured token, or the one in the file beside the ledger, or a new one there (the
    first start). A new token is never printed: the message says where it is."""
    if configured:
        return check_token(configured, f"PAX_{kind.upper()}_TOKEN")
    path = token_file(db, kind)
    if path.exists() or path.is_symlink():
        return read_token_file(path)
    token = write_token_file(path)
    print(  # never a character of the token: logs are read by more people than the file
        f"pax: generated the {kind} token in {path} (mode 0600); use it as "
        f"`Authorization: Bearer $(cat {path})`",
        file=sys.stderr,
        flush=True,
    )
    return token


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens as bytes (any characters, never an exception)."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def role_of(
    token: str,
    *,
    admin_token: str,
    worker_token: str | None = None,
    run_token_hash: str | None = None,
) -> str | None:
    """Who `token` makes its caller: the admin, the worker (when a worker token is asked
    about), a run's own trainer (when its hash is given), or nobody (None)."""
    if tokens_equal(token, admin_token):
        return ADMIN
    if worker_token is not None and tokens_equal(token, worker_token):
        return WORKER
    if run_token_hash and hmac.compare_digest(hash_token(token), run_token_hash):
        return RUN
    return None
