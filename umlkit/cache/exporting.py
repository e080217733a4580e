"""``umlkit cache export``: find the finished runs of a profile and pack them with their data."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from umlkit.cache.archives import (
    ARCHIVE_FORMAT,
    RUN_TABLES,
    CacheFolders,
    archive_kind,
    files_under,
    pack,
    store_name,
    versions,
)
from umlkit.checkpoints import first_line
from umlkit.data.base import array_store_prefix
from umlkit.fingerprints import fingerprint_files
from umlkit.runs import CONFIG_FILE, finished_checkpoints


def profile_data_folder(profile: str | None) -> str | None:
    """The data folder suffix of ``profile`` (``"default"`` for the reference profile), or
    ``None`` for every profile."""
    if profile is None:
        return None
    from umlkit.profiles import PROFILES, SETTINGS

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return SETTINGS[profile]["data"].get("folder", profile)


@dataclass
class Run:
    """A finished run found in a cache folder, ready to pack."""

    section: str  # "models" or "semi"
    folder: Path
    dataset: str  # its data folder's name, e.g. derm-default
    name: str  # the model or method


def find_run(section: str, folder: Path, synthetic: Path) -> tuple[Run | None, str]:
    """``(run, "")`` if ``folder`` holds a finished, current run on synthetic data, else
    ``(None, why not)``."""
    if section == "models":
        from umlkit.config import TrainConfig as Config
        from umlkit.config import config_hash as hasher
    else:
        from umlkit.semi.loop import SemiConfig as Config
        from umlkit.semi.loop import semi_config_hash as hasher
    try:
        values = json.loads((folder / CONFIG_FILE).read_text())
        dataset = Path(values["data_root"]).name
    except (OSError, ValueError, KeyError, TypeError):
        return None, "no readable config.json"
    root = synthetic / dataset
    if Path(values["data_root"]).parent.name != "synthetic" or not root.is_dir():
        return None, f"its data {dataset} are not in {synthetic}"
    try:
        config = Config.from_dict({**values, "data_root": str(root)})
        if hasher(config) != folder.name:
            return None, "stale (older code, or its data changed since)"
        finished = finished_checkpoints(folder, config.epochs, RUN_TABLES[section])
    except (TypeError, ValueError) as error:
        return None, f"unusable ({first_line(error)})"
    if finished is None:
        return None, "not finished"
    name = values.get("model") or values.get("method") or "?"
    return Run(section, folder, dataset, str(name)), ""


def find_runs(
    folders: CacheFolders, data_folder: str | None, progress: bool = False
) -> tuple[list[Run], dict[str, int]]:
    """The runs to pack (of datasets ``<kind>-<data_folder>``, or all) and how many of the
    others were left out, by reason."""
    candidates = []
    for section in ("models", "semi"):
        cache = folders.section(section)
        if cache.is_dir():
            candidates += [(section, path) for path in sorted(cache.iterdir()) if path.is_dir()]
    runs, left_out = [], {}
    for section, folder in tqdm(candidates, desc="runs", unit="run", disable=not progress):
        if data_folder is not None and not _data_name(folder).endswith(f"-{data_folder}"):
            continue
        run, why = find_run(section, folder, folders.synthetic)
        if run is None:
            left_out[why] = left_out.get(why, 0) + 1
        else:
            runs.append(run)
    return runs, left_out


def _data_name(folder: Path) -> str:
    """The data folder's name in a run folder's ``config.json`` (``""`` when unreadable)."""
    try:
        return Path(json.loads((folder / CONFIG_FILE).read_text())["data_root"]).name
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def stored_size(path: Path) -> list[int] | None:
    """The image size ``[H, W]`` of a stored split, read from its header (not its data)."""
    try:
        with zipfile.ZipFile(path) as store, store.open("images.npy") as stream:
            version = np.lib.format.read_magic(stream)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = read(stream)[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return [int(side) for side in shape[-2:]] if len(shape) == 4 else None


def find_arrays(arrays: Path, datasets: dict[str, Path]) -> list[dict[str, Any]]:
    """The stored splits of ``datasets`` (name -> folder) that match their files as they are
    now, each as a manifest entry (a stale copy of an older state of the files is left out)."""
    entries = []
    for path in sorted(arrays.glob("*.npz")) if arrays.is_dir() else ():
        parts = path.stem.split("-")
        size = stored_size(path)
        if len(parts) != 4 or size is None:
            continue
        kind, split = parts[0], parts[1]
        for name, root in datasets.items():
            if path.name.startswith(array_store_prefix(kind, root, split, size)):
                if store_name(kind, root, split, size) == path.name:
                    entry = {"file": path.name, "kind": kind, "split": split, "size": size}
                    entries.append({**entry, "dataset": name})
                break
    return entries


def _run_files(folder: Path) -> list[Path]:
    """A finished run's files: no temporaries (``.*``), no ``half/`` candidates (none remain
    once a run finishes, but an unfinished file of a crash could)."""
    return files_under(folder, lambda path: path.name.startswith(".") or path.parent.name == "half")


def export_cache(
    archive: str | Path,
    profile: str | None = None,
    folders: CacheFolders | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pack the finished runs, their datasets and decoded splits into ``archive``.

    Args:
        archive: the file to write (``.tar.gz``, ``.tgz`` or ``.zip``; it must not exist).
        profile: pack only this profile's runs and data (see the module docstring).
        folders: where the cache lives (default :meth:`CacheFolders.of_checkout`).
        progress: progress bars.
        log: receives the summary lines.

    Returns:
        The manifest written into the archive.

    Raises:
        FileExistsError: ``archive`` exists.
        ValueError: an unknown profile or archive ending, or no finished run to pack.
    """

    archive, folders = Path(archive), folders or CacheFolders.of_checkout()
    kind, data_folder = archive_kind(archive), profile_data_folder(profile)
    if archive.exists():
        raise FileExistsError(f"{archive} exists: choose another name or delete it first")
    runs, left_out = find_runs(folders, data_folder, progress)
    if not runs:
        which = f" of profile {profile}" if profile else ""
        found = sum(left_out.values())
        reasons = "; ".join(f"{count} {why}" for why, count in sorted(left_out.items()))
        seen = f"; {found} run folder(s) left out: {reasons}" if found else ""
        raise ValueError(
            f"no finished runs{which} in {folders.models} or {folders.semi}{seen}: nothing to "
            "export (run the notebooks first, e.g. make figures)"
        )
    datasets = {
        path.name: path
        for path in sorted(folders.synthetic.iterdir())
        if path.is_dir() and (data_folder is None or path.name.endswith(f"-{data_folder}"))
    }
    manifest = _manifest(profile, runs, datasets, find_arrays(folders.arrays, datasets))
    pack(archive, kind, manifest, _files_to_pack(folders, datasets, manifest, runs), progress)
    for line in _export_lines(archive, manifest, left_out):
        log(line)
    return manifest


def _files_to_pack(
    folders: CacheFolders, datasets: dict[str, Path], manifest: dict[str, Any], runs: list[Run]
) -> list[tuple[Path, str]]:
    """``(file, member name)`` of everything packed, in :data:`SECTIONS` order."""
    from umlkit.data.layouts import is_macos_metadata

    files = []
    for name, root in datasets.items():
        files += [
            (path, f"synthetic/{name}/{path.relative_to(root).as_posix()}")
            for path in files_under(root, is_macos_metadata)
        ]
    files += [(folders.arrays / e["file"], f"arrays/{e['file']}") for e in manifest["arrays"]]
    for run in runs:
        files += [
            (path, f"{run.section}/{run.folder.name}/{path.relative_to(run.folder).as_posix()}")
            for path in _run_files(run.folder)
        ]
    return files


def _manifest(
    profile: str | None, runs: list[Run], datasets: dict[str, Path], arrays: list[dict]
) -> dict[str, Any]:
    """The archive's ``manifest.json``: versions, date, runs, datasets with their fingerprints
    (checked at import) and decoded splits (named anew at import)."""
    described = []
    for name, root in datasets.items():
        fingerprint, count = fingerprint_files(root)
        described.append({"name": name, "fingerprint": fingerprint, "files": count})
    return {
        "format": ARCHIVE_FORMAT,
        **versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile,
        "runs": [
            {"section": r.section, "hash": r.folder.name, "dataset": r.dataset, "name": r.name}
            for r in runs
        ],
        "datasets": described,
        "arrays": arrays,
    }


def _export_lines(archive: Path, manifest: dict[str, Any], left_out: dict[str, int]) -> list[str]:
    """The summary ``umlkit cache export`` prints."""
    sections = [run["section"] for run in manifest["runs"]]
    size = archive.stat().st_size / 2**20
    lines = [
        f"exported {sections.count('models')} supervised and {sections.count('semi')} "
        f"semi-supervised runs, datasets "
        f"{', '.join(d['name'] for d in manifest['datasets']) or 'none'}, "
        f"{len(manifest['arrays'])} decoded splits: {archive} ({size:.1f} MB)"
    ]
    if left_out:
        reasons = "; ".join(f"{count} {why}" for why, count in sorted(left_out.items()))
        lines.append(f"left out: {reasons}")
    return lines
