"""``umlkit cache import``: check an archive completely, then unpack it into this checkout."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from umlkit.cache.archives import (
    ARCHIVE_FORMAT,
    MANIFEST,
    SECTIONS,
    CacheFolders,
    Member,
    archive_kind_of,
    files_under,
    members,
    store_name,
    versions,
)
from umlkit.fingerprints import file_digest, fingerprint_files
from umlkit.folders import atomic_write


@dataclass
class ImportReport:
    """What :func:`import_cache` did: runs, datasets and decoded splits brought in."""

    archive: Path
    runs: dict[str, int] = field(default_factory=dict)  # section -> runs
    datasets: list[str] = field(default_factory=list)
    arrays: int = 0
    written: int = 0  # files written
    unchanged: int = 0  # files already here with the same bytes
    removed: list[str] = field(default_factory=list)  # stale dataset files (--overwrite)

    def lines(self) -> list[str]:
        """The report printed by ``umlkit cache import``."""
        runs = self.runs.get("models", 0), self.runs.get("semi", 0)
        return [
            f"imported {self.archive.name}: {runs[0]} supervised and {runs[1]} semi-supervised "
            f"runs, datasets {', '.join(self.datasets) or 'none'}, {self.arrays} decoded splits",
            f"{self.written} files written, {self.unchanged} already here and identical"
            + (f", {len(self.removed)} stale dataset files removed" if self.removed else ""),
        ]


def read_manifest(archive: Path, kind: str) -> dict[str, Any]:
    """The archive's ``manifest.json`` (a ``.tar.gz`` must hold it first, as export writes it)."""
    with members(archive, kind) as entries:
        if kind == "tar":
            first = next(entries, None)
        else:
            first = next((entry for entry in entries if entry.name == MANIFEST), None)
        if first is None or first.name != MANIFEST or first.kind != "file":
            raise ValueError(f"{archive} is not a umlkit cache archive (no {MANIFEST} first)")
        with first.open() as stream:
            text = stream.read(1 << 24)
    try:
        manifest = json.loads(text)
        for key in ("runs", "datasets", "arrays"):
            if not isinstance(manifest[key], list):
                raise TypeError(key)
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{archive}: its {MANIFEST} is not a umlkit cache manifest") from None
    return manifest


def _describe_versions(values: dict[str, Any]) -> str:
    return (
        f"umlkit {values['umlkit_version']} (training revision {values['training_revision']}, "
        f"semi revision {values['semi_revision']})"
    )


def check_versions(archive: Path, manifest: dict[str, Any]) -> None:
    """Refuse an archive of another layout, umlkit version or loop revision, in one line: the
    cache keys contain all three, so no notebook here would load its models."""
    if manifest.get("format") != ARCHIVE_FORMAT:
        raise ValueError(
            f"{archive} has archive format {manifest.get('format')!r}; this umlkit reads "
            f"format {ARCHIVE_FORMAT}"
        )
    here = versions()
    theirs = {key: manifest.get(key) for key in here}
    if theirs != here:
        raise ValueError(
            f"{archive} was exported by {_describe_versions(theirs)} but this checkout is "
            f"{_describe_versions(here)}: no notebook here would load its models; export it "
            "again from a checkout at this version"
        )


#: How deep a file of each section sits at least: arrays/<file>, <section>/<folder>/<file>.
DEPTH = {"arrays": 2, "synthetic": 3, "models": 3, "semi": 3}


def member_problem(member: Member) -> str | None:
    """Why ``member`` may not be unpacked (a phrase), or ``None``.

    Only plain files and folders under the four sections, with relative paths that stay inside
    them: an absolute path or ``..`` could write anywhere (the "path traversal" attack).
    """
    name = member.name
    if member.kind == "other":
        return "a link or special file"
    if "\\" in name:
        return "a path with backslashes"
    if name.startswith("/") or PurePosixPath(name).is_absolute() or name[1:2] == ":":
        return "an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "a path with '..'"
    if name == MANIFEST:
        return None
    if not parts or parts[0] not in SECTIONS:
        return f"outside the archive's folders ({', '.join(SECTIONS)})"
    if member.kind == "file" and len(parts) < DEPTH[parts[0]]:
        return "not inside a dataset or run folder"
    return None


def destination(name: str, folders: CacheFolders, staging: Path) -> Path:
    """Where the member ``name`` is written (the decoded splits first go to ``staging``)."""
    section, *rest = PurePosixPath(name).parts
    return (staging if section == "arrays" else folders.section(section)).joinpath(*rest)


def _member_digest(member: Member) -> str:
    """The SHA-256 of a member's bytes (compared with :func:`file_digest` of a file here)."""
    digest = hashlib.sha256()
    with member.open() as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Survey:
    """What pass one of an import found: the files, those already here, the conflicts."""

    names: set[str] = field(default_factory=set)  # the file members
    same: set[str] = field(default_factory=set)  # already here with the same bytes
    differ: list[Path] = field(default_factory=list)  # here with other bytes
    extras: list[Path] = field(default_factory=list)  # dataset files here the archive lacks
    total: int = 0  # bytes to unpack


def survey(
    archive: Path, kind: str, folders: CacheFolders, manifest: dict, progress: bool = False
) -> Survey:
    """Read the whole archive once and write nothing: every member's name is checked, and each
    file that exists here is compared with the archive's. Raises a ``ValueError`` line for the
    first member that may not be unpacked."""
    from umlkit.data.layouts import is_macos_metadata

    found, staging = Survey(), Path("/nonexistent")
    with members(archive, kind) as entries:
        for member in tqdm(entries, desc="checking", unit=" files", disable=not progress):
            problem = member_problem(member)
            if problem is not None:
                raise ValueError(
                    f"cannot import {archive}: member {member.name!r} is {problem}; "
                    "nothing was imported"
                )
            if member.kind != "file" or member.name == MANIFEST:
                continue
            found.names.add(member.name)
            found.total += member.size
            target = destination(member.name, folders, staging)
            if member.name.startswith("arrays/") or not target.exists():
                continue
            if target.is_file() and target.stat().st_size == member.size:
                if _member_digest(member) == file_digest(target):
                    found.same.add(member.name)
                    continue
            found.differ.append(target)
    for entry in manifest["datasets"]:
        root = folders.synthetic / str(entry["name"])
        if root.is_dir():
            found.extras += [
                path
                for path in files_under(root, is_macos_metadata)
                if f"synthetic/{root.name}/{path.relative_to(root).as_posix()}" not in found.names
            ]
    return found


def refuse_conflicts(archive: Path, found: Survey) -> None:
    """One ``FileExistsError`` line naming the first file here the import would replace."""
    problems = []
    if found.differ:
        problems.append(
            f"{len(found.differ)} file(s) here differ from the archive's, e.g. {found.differ[0]}"
        )
    if found.extras:
        problems.append(
            f"{len(found.extras)} dataset file(s) here are not in the archive, e.g. "
            f"{found.extras[0]}"
        )
    if problems:
        raise FileExistsError(
            f"cannot import {archive}: {'; '.join(problems)}; --overwrite replaces them "
            "(nothing was imported)"
        )


def _copy_member(member: Member, target: Path) -> None:
    with member.open() as source, target.open("wb") as sink:
        shutil.copyfileobj(source, sink, 1 << 20)


def unpack(
    archive: Path,
    kind: str,
    folders: CacheFolders,
    staging: Path,
    found: Survey,
    progress: bool = False,
) -> int:
    """Pass two: write every file member not already here (atomically, one at a time) and
    return how many were written (the decoded splits go to ``staging``, not counted here)."""
    written = 0
    bar = tqdm(
        total=found.total, unit="B", unit_scale=True, desc=archive.name, disable=not progress
    )
    with bar, members(archive, kind) as entries:
        for member in entries:
            if member.kind != "file" or member.name == MANIFEST:
                continue
            if member_problem(member) is not None or member.name not in found.names:
                raise ValueError(f"{archive} changed while it was being imported")
            if member.name not in found.same:
                target = destination(member.name, folders, staging)
                atomic_write(target, lambda temporary, m=member: _copy_member(m, temporary))
                written += not member.name.startswith("arrays/")  # counted once in place
            bar.update(member.size)
    return written


def check_datasets(archive: Path, manifest: dict, folders: CacheFolders) -> None:
    """Each imported dataset must have the fingerprint its runs were trained on, or their cache
    keys would not match here. Fingerprinting also fills this checkout's fingerprint cache."""
    for entry in manifest["datasets"]:
        root = folders.synthetic / str(entry["name"])
        fingerprint, _ = fingerprint_files(root)
        if fingerprint != entry["fingerprint"]:
            raise ValueError(
                f"after importing {archive}, the dataset {root} has fingerprint {fingerprint} "
                f"but its runs were trained on {entry['fingerprint']}: its models would not be "
                "found (a damaged archive?)"
            )


def place_arrays(
    manifest: dict, folders: CacheFolders, staging: Path, overwrite: bool, log: Callable
) -> tuple[int, int]:
    """Give each unpacked decoded split the name the array store looks for in this checkout
    (its folder and file times are part of it) and move it into place; return how many were
    placed and how many were here already."""
    placed = kept = 0
    for entry in manifest["arrays"]:
        staged = staging / str(entry["file"])
        root = folders.synthetic / str(entry["dataset"])
        if not staged.is_file():
            continue
        name = store_name(str(entry["kind"]), root, str(entry["split"]), list(entry["size"]))
        if name is None:
            log(f"decoded split {entry['file']} left out: {root} has no {entry['split']} split")
            continue
        target = folders.arrays / name
        if target.exists() and not overwrite:
            kept += 1  # the same split of the same files: its name says so
            continue
        os.replace(staged, target)
        placed += 1
    return placed, kept


def import_cache(
    archive: str | Path,
    overwrite: bool = False,
    folders: CacheFolders | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ImportReport:
    """Unpack an archive of :func:`export_cache` into this checkout's ``data/``.

    The archive is read twice: once to check every member and compare each file that exists
    here (nothing is written when anything is wrong), once to write. Then the datasets'
    fingerprints are checked against the manifest and the decoded splits are named for this
    checkout.

    Args:
        archive: the ``.tar.gz`` or ``.zip`` file.
        overwrite: replace files here that differ from the archive's (and remove dataset files
            the archive does not have), instead of refusing.
        folders: where to unpack (default :meth:`CacheFolders.of_checkout`).
        progress: progress bars.
        log: receives the report's lines.

    Raises:
        FileNotFoundError: no file ``archive``.
        ValueError: not an archive, a damaged one, one of another umlkit version or revision,
            or a member that may not be unpacked; one line each.
        FileExistsError: files here differ and ``overwrite`` is not set.
    """
    archive, folders = Path(archive), folders or CacheFolders.of_checkout()
    kind = archive_kind_of(archive)
    manifest = read_manifest(archive, kind)
    check_versions(archive, manifest)
    found = survey(archive, kind, folders, manifest, progress)
    if not overwrite:
        refuse_conflicts(archive, found)
    report = ImportReport(archive=archive, unchanged=len(found.same))
    for path in found.extras:
        path.unlink()
        report.removed.append(str(path))
    staging = folders.arrays / f".import-{os.getpid()}"
    try:
        report.written = unpack(archive, kind, folders, staging, found, progress)
        check_datasets(archive, manifest, folders)
        placed, kept = place_arrays(manifest, folders, staging, overwrite, log)
        report.arrays, report.written, report.unchanged = (
            placed + kept,
            report.written + placed,
            report.unchanged + kept,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.datasets = [str(entry["name"]) for entry in manifest["datasets"]]
    for run in manifest["runs"]:
        report.runs[run["section"]] = report.runs.get(run["section"], 0) + 1
    for line in report.lines():
        log(line)
    return report
