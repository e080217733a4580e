"""The archive itself: its layout, the folders it maps to, reading and writing tar.gz and zip.

Shared by :mod:`umlkit.cache.exporting` and :mod:`umlkit.cache.importing`; the package's
docstring (:mod:`umlkit.cache`) describes the layout and why it holds what it holds.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tqdm.auto import tqdm

import umlkit
from umlkit.checkpoints import first_line
from umlkit.data.base import array_cache_key, array_store_prefix, default_array_cache_dir
from umlkit.folders import LOCK_FILE, atomic_write
from umlkit.runs import CHECKPOINT_HALF, HISTORY_FILE, STEPS_FILE
from umlkit.runtime import project_root

#: Version of the archive's layout; an archive of another is refused.
ARCHIVE_FORMAT = 1
MANIFEST = "manifest.json"
#: The archive's top-level folders, in the order they are packed (data first, runs last).
SECTIONS = ("synthetic", "arrays", "models", "semi")
#: Archive kinds by file name ending.
ENDINGS = {".tar.gz": "tar", ".tgz": "tar", ".zip": "zip"}
#: The tables a finished run must have beside its checkpoints, per section (as the loops ask).
RUN_TABLES = {
    "models": (HISTORY_FILE, STEPS_FILE, CHECKPOINT_HALF),
    "semi": (HISTORY_FILE, CHECKPOINT_HALF),
}


@dataclass(frozen=True)
class CacheFolders:
    """Where a checkout keeps what the archive holds; one folder per archive section."""

    models: Path
    semi: Path
    arrays: Path
    synthetic: Path

    @classmethod
    def of_checkout(cls) -> CacheFolders:
        """The folders the notebooks use: ``data/cache/{models,semi,arrays}`` (the arrays
        follow ``$UMLKIT_ARRAY_CACHE``) and ``data/synthetic`` of the project root."""
        from umlkit.semi.loop import default_semi_cache_dir
        from umlkit.train import default_cache_dir

        return cls(
            models=default_cache_dir(),
            semi=default_semi_cache_dir(),
            arrays=default_array_cache_dir(),
            synthetic=project_root() / "data" / "synthetic",
        )

    def section(self, name: str) -> Path:
        """The folder of archive section ``name`` (one of :data:`SECTIONS`)."""
        return Path(getattr(self, name))


def versions() -> dict[str, Any]:
    """What an archive must match to be imported: the umlkit version and both loops' revisions
    (all three are part of every cache key)."""
    from umlkit.config import TRAINING_REVISION
    from umlkit.semi.loop import SEMI_REVISION

    return {
        "umlkit_version": umlkit.__version__,
        "training_revision": TRAINING_REVISION,
        "semi_revision": SEMI_REVISION,
    }


def archive_kind(path: Path) -> str:
    """``"tar"`` or ``"zip"`` from the name's ending; a ``ValueError`` line for another."""
    for ending, kind in ENDINGS.items():
        if path.name.lower().endswith(ending):
            return kind
    raise ValueError(f"{path}: a cache archive's name ends in .tar.gz, .tgz or .zip")


def store_name(kind: str, root: Path, split: str, size: list[int]) -> str | None:
    """The name the array store gives the split now (its files as they are); ``None`` when the
    split cannot be listed."""
    from umlkit.data import load_dataset

    try:
        dataset = load_dataset(kind, root, split=split, size=size, cache=False)
    except (ValueError, OSError):
        return None
    prefix = array_store_prefix(dataset.kind, root, dataset.split, dataset.size)
    return f"{prefix}{array_cache_key(dataset)}.npz"


def files_under(folder: Path, skip: Callable[[Path], bool]) -> list[Path]:
    """The files under ``folder``, sorted, less the lock file and those ``skip`` names."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE and not skip(path)
    ]


@contextmanager
def _writer(kind: str, target: Path) -> Iterator[tuple[Callable, Callable]]:
    """``(add_file(path, name), add_bytes(name, data))`` writing a new archive at ``target``.

    Compression level 1: checkpoints, PNGs and ``.npz`` files hardly compress further, and
    level 9 would take minutes for a gigabyte. Owner names are left out of tar headers.
    """

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    if kind == "tar":
        with tarfile.open(target, "w:gz", compresslevel=1) as tar:

            def add_bytes(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))

            yield (
                lambda path, name: tar.add(path, arcname=name, recursive=False, filter=anonymous),
                add_bytes,
            )
    else:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            yield archive.write, archive.writestr


def pack(
    archive: Path,
    kind: str,
    manifest: dict[str, Any],
    files: list[tuple[Path, str]],
    progress: bool = True,
) -> None:
    """Write ``manifest.json`` (first, so that import reads it before anything else), then
    ``files`` (``(path, member name)``), into ``archive``, atomically
    (:func:`umlkit.folders.atomic_write`): an interrupted export leaves no half archive."""
    total = sum(path.stat().st_size for path, _ in files)
    payload = (json.dumps(manifest, indent=1) + "\n").encode()

    def write(target: Path) -> None:
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=archive.name, disable=not progress)
        with bar, _writer(kind, target) as (add_file, add_bytes):
            add_bytes(MANIFEST, payload)
            for path, name in files:
                add_file(path, name)
                bar.update(path.stat().st_size)

    atomic_write(archive, write)


@dataclass
class Member:
    """One entry of an archive, whichever kind: its name, size, type and a way to read it."""

    name: str
    size: int
    kind: str  # "file", "folder" or "other" (a link, a device)
    open: Callable[[], BinaryIO]


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """A zip entry's type; the upper 16 bits of ``external_attr`` hold a Unix file mode."""
    import stat

    if stat.S_ISLNK(info.external_attr >> 16):
        return "other"
    return "folder" if info.is_dir() else "file"


@contextmanager
def members(archive: Path, kind: str) -> Iterator[Iterator[Member]]:
    """The entries of ``archive`` in their order; a damaged archive is one ``ValueError`` line.

    A ``.tar.gz`` is read as a stream: each entry must be read before the next is asked for
    (going back would decompress the archive from its start again).
    """
    import gzip
    import zlib

    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tar:
                yield (
                    Member(
                        info.name,
                        info.size,
                        "file" if info.isfile() else "folder" if info.isdir() else "other",
                        lambda info=info: tar.extractfile(info),
                    )
                    for info in tar
                )
        else:
            with zipfile.ZipFile(archive) as store:
                yield (
                    Member(
                        info.filename, info.file_size, _zip_kind(info), lambda i=info: store.open(i)
                    )
                    for info in store.infolist()
                )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(f"{archive} is damaged ({first_line(error)})") from None


def archive_kind_of(archive: Path) -> str:
    """``"tar"`` or ``"zip"`` from the file's content (not its name)."""
    if not archive.exists():
        raise FileNotFoundError(f"cache archive {archive} not found")
    if not archive.is_file():
        raise ValueError(f"{archive} is a folder, not a cache archive")
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ValueError(f"{archive} is not a .tar.gz or .zip archive")
