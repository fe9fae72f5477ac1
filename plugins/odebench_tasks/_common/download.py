"""Data cache location and checked downloads, in the standard library only.

Tasks keep downloaded data under one cache folder so runs share it, and every download
is verified against a known md5 sum and moved into place atomically, so an interrupted
or corrupted transfer never leaves a file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Sequence

from odebench.errors import InvalidInputError

_CHUNK = 1 << 20


class DownloadError(InvalidInputError):
    """No mirror delivered a file with the expected md5 sum.

    ``failures`` holds ``(mirror, short reason)`` pairs so callers can build their own
    message (e.g. one that lists every file still missing).
    """

    def __init__(self, filename: str, dest_dir: Path, failures: list[tuple[str, str]]) -> None:
        self.filename, self.dest_dir, self.failures = filename, Path(dest_dir), failures
        hint = f"{failures[0][0]}{filename}" if failures else filename
        super().__init__(
            f"could not download {filename} into {dest_dir} ({describe_failures(failures)}); "
            f"download {hint} by hand and put it in {dest_dir}"
        )


def describe_failures(failures: Sequence[tuple[str, str]]) -> str:
    """One line listing why each mirror failed, for error messages."""
    return "; ".join(f"{mirror}: {reason}" for mirror, reason in failures) or "no mirrors given"


def data_root() -> Path:
    """Where tasks cache data: ``$ODEBENCH_DATA`` if set (CI, shared disks), else ``~/.cache/odebench``."""
    env = os.environ.get("ODEBENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "odebench"


def md5_of(path: str | os.PathLike) -> str:
    """md5 hex digest of a file, read in chunks so large files need little memory."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _short(exc: BaseException) -> str:
    """An exception as one short line (URLError hides the cause in ``reason``)."""
    reason = getattr(exc, "reason", None) or exc
    text = " ".join(str(reason).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _download_to(url: str, dest_dir: Path, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temp file in ``dest_dir``; return its path and md5 (removed on error)."""
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp), digest.hexdigest()


def fetch(filename: str, mirrors: Sequence[str], dest_dir: str | os.PathLike, md5: str,
          timeout: float = 30) -> Path:
    """Download ``mirror + filename`` into ``dest_dir``, trying each mirror in order.

    The file only appears under its final name once its md5 sum matched, so a crash
    or a bad mirror never leaves a half-written or wrong file in the cache.
    Raises ``DownloadError`` when no mirror delivers the file.
    """
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(filename, dest_dir, [("(folder)", f"cannot create it: {_short(exc)}")]) from exc
    failures: list[tuple[str, str]] = []
    for mirror in mirrors:
        try:
            tmp, got = _download_to(mirror + filename, dest_dir, timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append((mirror, _short(exc)))
            continue
        if got != md5:
            tmp.unlink()
            failures.append((mirror, f"md5 {got}, expected {md5}"))
            continue
        target = dest_dir / filename
        os.replace(tmp, target)
        return target
    raise DownloadError(filename, dest_dir, failures)
