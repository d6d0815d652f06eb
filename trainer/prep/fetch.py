"""Verified downloads from an official source or a mirror (a directory or an http(s) URL).

pooch does the HTTP part: streaming to a temporary file, sha256 check, atomic move into the
cache, a tqdm progress bar. A file whose hash does not match never reaches the cache.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

MIRROR_ENV = "PAX_DATA_MIRROR"
CACHE_ENV = "PAX_CACHE_DIR"
MIRROR_HINT = (
    "Offline? Point at a mirror: `--mirror ../shared/data` or "
    "`export PAX_DATA_MIRROR=../shared/data` (a folder or an http(s) URL laid out like the "
    "official sources; see README, 'Data')."
)


class FetchError(RuntimeError):
    """A download could not be completed; the message says what to do."""


class NotOnSource(FetchError):
    """The source answered, but it does not hold this file (404 / missing in the folder)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("pax"))


def resolve_mirror(mirror: str | None) -> str | None:
    """The --mirror argument wins over PAX_DATA_MIRROR; an empty value means 'no mirror'."""
    value = mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")
    return value.strip() or None


def is_url(base: str) -> bool:
    return base.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Fetched:
    path: Path
    url: str
    sha256: str


def exists(base: str, relpath: str) -> bool:
    """Whether the source holds `relpath` (a HEAD request for URLs)."""
    if not is_url(base):
        return (Path(base).expanduser() / relpath).is_file()
    url = base.rstrip("/") + "/" + relpath
    try:
        r = requests.head(url, allow_redirects=True, timeout=30)
    except requests.RequestException as e:
        raise FetchError(f"cannot reach {url} ({type(e).__name__}). {MIRROR_HINT}") from e
    if r.status_code == 404:
        return False
    if r.status_code >= 400:
        raise FetchError(f"{url}: HTTP {r.status_code}. {MIRROR_HINT}")
    return True


def fetch(
    base: str, relpath: str, *, sha256: str | None, subdir: str, progress: bool | None = None
) -> Fetched:
    """Fetch `relpath` below `base` and verify it.

    sha256=None accepts any content (the hash is still computed and returned for the manifest);
    callers pass a known hash wherever one exists.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    if is_url(base):
        url = base.rstrip("/") + "/" + relpath
        dest = cache_dir() / subdir
        fname = relpath.replace("/", "__")
        try:
            path = pooch.retrieve(
                url,
                known_hash=f"sha256:{sha256}" if sha256 else None,
                fname=fname,
                path=dest,
                progressbar=progress,
            )
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status == 404:
                raise NotOnSource(f"{url}: not found (HTTP 404)") from e
            raise FetchError(f"{url}: HTTP {status}. {MIRROR_HINT}") from e
        except requests.ConnectionError as e:
            raise FetchError(f"cannot reach {url} ({type(e).__name__}). {MIRROR_HINT}") from e
        except ValueError as e:  # pooch's hash mismatch; the temporary file is already gone
            raise FetchError(
                f"{url}: corrupt or truncated download ({e}). Nothing was kept; "
                "retry, or check the mirror's copy."
            ) from e
        path = Path(path)
        return Fetched(path, url, sha256 or sha256_file(path))

    path = Path(base).expanduser() / relpath
    if not path.is_file():
        if not Path(base).expanduser().is_dir():
            raise FetchError(f"mirror folder {base} does not exist. {MIRROR_HINT}")
        raise NotOnSource(f"{path}: not in the mirror")
    digest = sha256_file(path)
    if sha256 and digest != sha256:
        raise FetchError(
            f"{path}: sha256 {digest} does not match the expected {sha256}: the "
            "mirror's copy is corrupt or truncated; replace it with the official file."
        )
    return Fetched(path, path.resolve().as_uri(), digest)


def mirror_sums(base: str) -> dict[str, str]:
    """A mirror may carry SHA256SUMS (`sha256sum` output) for files with no built-in hash."""
    try:
        f = fetch(base, "SHA256SUMS", sha256=None, subdir="mirror-sums", progress=False)
    except NotOnSource:
        return {}
    sums = {}
    for line in f.path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def fetch_verified(
    base: str, relpath: str, sums: dict[str, str], known: dict[str, str], subdir: str
) -> Fetched:
    """Fetch a file that must be verified: NotOnSource if absent, FetchError if no hash is known.

    The mirror's own SHA256SUMS comes first (a mirror may hold other copies, e.g. test
    fixtures), then the official hashes shipped with pax (`known`, by file name)."""
    if not exists(base, relpath):
        raise NotOnSource(f"{relpath}: not on {base}")
    digest = sums.get(relpath) or known.get(Path(relpath).name)
    if digest is None:
        raise FetchError(
            f"no sha256 is known for {relpath}: add a SHA256SUMS file "
            "(`sha256sum` format, paths relative to the mirror) to the mirror."
        )
    return fetch(base, relpath, sha256=digest, subdir=subdir)


def atomic_write_text(dst: Path, text: str) -> None:
    # one temporary name per writer, threads included: two writers of one file must not
    # rename each other's temporary away
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, dst)
