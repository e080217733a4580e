"""Data fingerprints: one hash of the names, sizes and contents of the files of a dataset folder.

The model cache (:func:`umlkit.runs.cache_key`), the checkpoints
(:func:`umlkit.checkpoints.data_record`) and resuming (:func:`umlkit.checkpoints.check_same_data`)
tell datasets apart by :func:`dataset_fingerprint`. It reads every byte, so a label swapped in a
table or an image edited in place is new data, and it ignores paths and file times, so a copied or
moved dataset is the same data. Reading every byte each time would be slow, so the digest of each
file is cached under its size and times (:func:`fingerprint_files`): an unchanged dataset is not
read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from umlkit.folders import atomic_write

#: Bytes read at a time when a file's content is hashed (large reads keep Python's share small).
HASH_CHUNK_BYTES = 1 << 20
#: Version of the fingerprint cache's files; a cache of another version is ignored.
FINGERPRINT_CACHE_VERSION = 1
#: A file changed less than this many nanoseconds before it was hashed is not cached: a file
#: system stamps times from a coarse clock (a few milliseconds; 1 or 2 s on some), so a second
#: write within the same tick could leave its change time as it was ("racy" entries, as git's
#: index calls them). Such a file is read again next time, until it has settled.
SETTLED_NS = 2 * 10**9
#: Files no loader reads and that the operating system writes on its own (macOS Finder's folder
#: settings, AppleDouble ``._<name>`` files: :func:`umlkit.data.layouts.is_macos_metadata`) are
#: left out of the fingerprint, so opening or copying the folder on a Mac retrains nothing.


def default_fingerprint_cache_dir() -> Path:
    """Where :func:`fingerprint_files` keeps the digests of the files it has read:
    ``$UMLKIT_FINGERPRINT_CACHE`` if set (the tests point it at a temporary folder), else
    ``<project root>/data/cache/fingerprints``."""
    from umlkit.runtime import project_root

    folder = os.environ.get("UMLKIT_FINGERPRINT_CACHE")
    return Path(folder) if folder else project_root() / "data" / "cache" / "fingerprints"


def file_digest(path: Path) -> str:
    """The SHA-256 of the bytes of the file at ``path``, as hex (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint_cache_path(root: Path, cache_dir: str | Path | None) -> Path:
    """The cache file of the dataset folder ``root``: one per folder, named by its real path."""
    folder = default_fingerprint_cache_dir() if cache_dir is None else Path(cache_dir)
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return folder / f"{name}.json"


def _read_fingerprint_cache(path: Path) -> dict[str, list]:
    """``{relative path: [size, mtime_ns, ctime_ns, digest]}`` from a cache file; an empty dict
    when there is none, or it is unreadable or of another version (it is only a speed-up)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("version") != FINGERPRINT_CACHE_VERSION:
        return {}
    files = stored.get("files")
    return files if isinstance(files, dict) else {}


def _write_fingerprint_cache(path: Path, root: Path, files: dict[str, list]) -> None:
    """Store ``files`` atomically; a cache folder that cannot be written only costs speed."""
    values = {"version": FINGERPRINT_CACHE_VERSION, "root": str(root.resolve()), "files": files}
    try:
        atomic_write(path, lambda target: target.write_text(json.dumps(values)))
    except OSError:
        pass


def fingerprint_files(root: str | Path, cache_dir: str | Path | None = None) -> tuple[str, int]:
    """:func:`dataset_fingerprint` of ``root`` and the number of files it covers.

    Args:
        root: the dataset folder.
        cache_dir: the folder of the digest cache (default
            :func:`default_fingerprint_cache_dir`).

    Raises:
        ValueError: a file under ``root`` cannot be read (one line naming it).
    """
    root = Path(root)
    cache_path = _fingerprint_cache_path(root, cache_dir)
    known = _read_fingerprint_cache(cache_path)
    settled = time.time_ns() - SETTLED_NS  # files changed before this may be cached
    from umlkit.data.layouts import is_macos_metadata  # here: umlkit.data imports this module

    files: dict[str, list] = {}
    for path in sorted(root.rglob("*")):
        if is_macos_metadata(path) or not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
            # The change time (ctime) is set by the system on every write and cannot be set
            # back by a program, unlike the modification time (os.utime, cp -p, tar, rsync).
            stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
            cached = known.get(relative)
            unchanged = isinstance(cached, list) and len(cached) == 4 and cached[:3] == stamp
            files[relative] = [*stamp, cached[3] if unchanged else file_digest(path)]
        except FileNotFoundError:
            continue  # removed since the folder was listed: no longer part of the dataset
        except OSError as error:
            raise ValueError(
                f"cannot fingerprint the dataset {root}: {path} cannot be read "
                f"({error.strerror or error})"
            ) from None
    cacheable = {relative: entry for relative, entry in files.items() if entry[2] < settled}
    if cacheable != known:
        _write_fingerprint_cache(cache_path, root, cacheable)
    # The fingerprint itself: names, sizes and contents, but no times, so that a copy of the
    # folder (which has other times) has the same fingerprint.
    entries = sorted([relative, stamp[0], stamp[3]] for relative, stamp in files.items())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16], len(entries)


def dataset_fingerprint(root: str | Path, cache_dir: str | Path | None = None) -> str:
    """A hash of the relative path, size and **content** of every file under ``root``.

    Two folders have the same fingerprint when they hold the same files with the same bytes,
    whatever their paths and file times (a copied or moved dataset keeps it); swapping two
    labels in a table, or editing an image in place, changes it. The model cache keys on it
    (:func:`umlkit.runs.cache_key`) and a checkpoint records it (:func:`data_record`), so that
    neither a cached model nor a resumed run is used with other data.

    Reading every byte of a dataset takes time (about a second per few hundred MB), so the
    digest of each file is kept in a small cache file (one per dataset folder, in
    :func:`default_fingerprint_cache_dir`) under its relative path, size, modification time and
    change time. A file whose four values are unchanged is not read again; any write to a file
    changes its change time, even when its size and modification time are put back. A file
    changed in the last :data:`SETTLED_NS` (2 s) is read every time until it has settled.

    Args:
        root: the dataset folder.
        cache_dir: the folder of the digest cache (default
            :func:`default_fingerprint_cache_dir`).

    Returns:
        16 hex digits.
    """
    return fingerprint_files(root, cache_dir)[0]
