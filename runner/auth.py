"""The admin token: PAX_ADMIN_TOKEN, or generated on first start and kept (mode 0600) beside
the database, printed once."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path


def token_file(db_path: Path) -> Path:
    return Path(db_path).with_name(Path(db_path).name + ".admin_token")


def load_or_create_admin_token(db_path: Path, configured: str | None) -> str:
    if configured:
        if len(configured) < 16:
            raise ValueError(
                "PAX_ADMIN_TOKEN is shorter than 16 characters: use a long random "
                "value, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
        return configured
    path = token_file(db_path)
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(
        f"pax: generated the admin token (stored in {path}, mode 0600); use it as\n"
        f"  Authorization: Bearer {token}",
        file=sys.stderr,
        flush=True,
    )
    return token
