"""I-SPY1 breast DCE-MRI: from NIfTI volumes to 2-D slices, cached, split by patient.

Layout of the download (as the UML reference preprocessing expects it)::

    <root>/outcome_new.xlsx                                   columns SUBJECTID, PCR (0/1)
    <root>/Dataset ISPY/ISPY_<id>/DCEMRI_1.nii                one DCE-MRI volume per case
    <root>/Tumor_segmentation_new/ISPY_<id>_tumor_mask.nii    its tumour mask

umlkit finds the volumes and masks anywhere under ``root`` by these file names (``.nii`` or
``.nii.gz``), so the two folder names may differ. Classification target: pathologic complete
response (pCR); segmentation target: the tumour.

Preprocessing, per case (:func:`preprocess_case`):

1. read both volumes with nibabel; they must have the same shape; the mask must be binary;
2. pick ``n_slices`` axial slices (last axis) around the slice of largest tumour area: the
   tumour-bearing slices nearest to it, filled up with the nearest tumour-free ones if the tumour
   spans fewer slices (the reference code also keeps only tumour-bearing slices);
3. scale intensities to [0, 1] per case: clip to the 1st and 99th percentile of the whole volume
   and rescale, so slices of one patient stay comparable (the reference saves each slice with
   its own min-max);
4. transpose each slice (rows = second voxel axis), the orientation the reference code's
   ``rot90`` + ``flip`` produces.

The result is cached as ``<cache_dir>/<case>_<key>.npz``, the key a hash of the source files'
paths, sizes and modification times and of the parameters, so a changed file or parameter never
reuses a stale cache. Splits are drawn **by patient**, stratified by pCR and seeded, so the
slices of one patient never cross splits (the reference split 157 cases as 127 / 15 / 15, hence
the default fractions 0.8 / 0.1 / 0.1).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from umlkit.checkpoints import save_npz_atomic
from umlkit.data.base import (
    DatasetItemError,
    MissingFileError,
    Record,
    SegmentationClassificationDataset,
    stratified_split,
)

OUTCOME_FILE = "outcome_new.xlsx"
IMAGE_FILE = "DCEMRI_1.nii"
MASK_SUFFIX = "_tumor_mask.nii"
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
#: Bumped whenever preprocessing changes, so old cache files are not reused.
PREPROCESS_VERSION = 1
_CASE_FOLDER = re.compile(r"ISPY_[A-Za-z0-9]+")
_MASK_FILE = re.compile(r"(ISPY_[A-Za-z0-9]+)_tumor_mask\.nii(\.gz)?")


def default_cache_dir() -> Path:
    """``data/cache/ispy1`` of the umlkit checkout (see ``data/README.md``)."""
    from umlkit.runtime import project_root

    return project_root() / "data" / "cache" / "ispy1"


def read_outcomes(path: str | Path) -> dict[str, int | str]:
    """Case id (``ISPY_<SUBJECTID>``) -> pCR label 0/1, or the problem with that row's label.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the spreadsheet cannot be read or lacks ``SUBJECTID`` / ``PCR``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"I-SPY1 outcome table {path} not found")
    try:
        table = pd.read_excel(path)
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(f"{path}: cannot read the outcome table ({error})") from error
    missing = [c for c in ("SUBJECTID", "PCR") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: the outcome table lacks the column(s) {missing}")
    outcomes: dict[str, int | str] = {}
    for subject, pcr in zip(table["SUBJECTID"], table["PCR"], strict=True):
        if isinstance(subject, float) and subject.is_integer():
            subject = int(subject)
        case = f"ISPY_{str(subject).strip()}"
        if pcr in (0, 1):
            outcomes[case] = int(pcr)
        else:
            outcomes[case] = f"PCR {pcr!r} of SUBJECTID {subject} in {path.name} is not 0 or 1"
    return outcomes


def find_case_files(root: str | Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """The DCE-MRI volumes and the tumour masks found under ``root``, by case id.

    Returns:
        ``(images, masks)``, each ``{case: [path, ...]}`` sorted; a case with more than one
        path (``.nii`` and ``.nii.gz``, or one case folder in two places) is ambiguous, and
        :func:`case_records` reports it.
    """
    images: dict[str, list[Path]] = {}
    masks: dict[str, list[Path]] = {}
    for path in sorted(Path(root).rglob("*.nii*")):
        if path.name in (IMAGE_FILE, IMAGE_FILE + ".gz") and _CASE_FOLDER.fullmatch(
            path.parent.name
        ):
            images.setdefault(path.parent.name, []).append(path)
        match = _MASK_FILE.fullmatch(path.name)
        if match:
            masks.setdefault(match.group(1), []).append(path)
    return images, masks


def select_slices(tumour_area: np.ndarray, n_slices: int) -> np.ndarray:
    """The ``n_slices`` slice indices nearest to the slice of largest tumour area, sorted.

    Tumour-bearing slices come first (nearest first, ties to the lower index); tumour-free
    slices only fill up when the tumour spans fewer than ``n_slices`` slices.
    """
    index = np.arange(len(tumour_area))
    peak = int(np.argmax(tumour_area))
    order = np.lexsort((index, np.abs(index - peak), tumour_area == 0))
    return np.sort(order[:n_slices])


def _load_volume(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        volume = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for broken files
        raise DatasetItemError(path, f"cannot read the NIfTI volume ({error})") from error
    while volume.ndim > 3 and volume.shape[-1] == 1:
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise DatasetItemError(path, f"expected a 3-D volume, got shape {volume.shape}")
    return volume


def preprocess_case(image_path: Path, mask_path: Path, n_slices: int = 10) -> dict[str, np.ndarray]:
    """Slices of one case (see the module docstring).

    Returns:
        ``images`` float32 (n, H, W) in [0, 1], ``masks`` uint8 (n, H, W) in {0, 1},
        ``slices`` int64 (n,): the slice indices in the volume.

    Raises:
        DatasetItemError: unreadable volume, shapes that differ, a non-binary or empty mask.
    """
    image = _load_volume(image_path)
    mask = _load_volume(mask_path)
    if image.shape != mask.shape:
        raise DatasetItemError(
            mask_path, f"mask shape {mask.shape} differs from the image shape {image.shape}"
        )
    values = np.unique(mask)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        raise DatasetItemError(
            mask_path, f"mask holds the values {values[:8].tolist()}, expected 0 and one label"
        )
    tumour = mask > 0
    area = tumour.sum(axis=(0, 1))
    if area.max() == 0:
        raise DatasetItemError(mask_path, "tumour mask is empty")
    chosen = select_slices(area, n_slices)
    low, high = np.percentile(image, (1.0, 99.0))
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
    return {
        "images": np.ascontiguousarray(scaled[:, :, chosen].transpose(2, 1, 0), dtype=np.float32),
        "masks": np.ascontiguousarray(tumour[:, :, chosen].transpose(2, 1, 0), dtype=np.uint8),
        "slices": chosen.astype(np.int64),
    }


def _cache_key(case: str, image: Path, mask: Path, n_slices: int) -> str:
    def describe(path: Path) -> list:
        # the change time too: a volume edited in place with its modification time put back
        # (os.utime, cp -p) still has a new one, so it is preprocessed again
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]

    blob = json.dumps(
        [PREPROCESS_VERSION, case, n_slices, describe(image), describe(mask)], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_case(
    case: str, image: Path, mask: Path, n_slices: int, cache_dir: Path
) -> dict[str, np.ndarray]:
    """:func:`preprocess_case`, read from ``cache_dir`` when it was computed before."""
    path = Path(cache_dir) / f"{case}_{_cache_key(case, image, mask, n_slices)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files}
    arrays = preprocess_case(image, mask, n_slices)
    save_npz_atomic(path, **arrays)  # an interrupted run never leaves a truncated cache entry
    return arrays


def case_records(root: Path) -> list[Record]:
    """One record per case (volume found or listed in the outcome table), with its problems."""
    if not root.is_dir():
        raise FileNotFoundError(f"I-SPY1 folder {root} not found (or not a folder)")
    outcome_path = root / OUTCOME_FILE
    if not outcome_path.is_file():
        found = sorted(root.rglob(OUTCOME_FILE))
        outcome_path = found[0] if found else outcome_path
    outcomes = read_outcomes(outcome_path)
    images, masks = find_case_files(root)
    if not images and not outcomes:
        raise ValueError(f"I-SPY1: no cases in {root} (no */ISPY_<id>/{IMAGE_FILE} found)")
    records = []
    for case in sorted(set(images) | set(outcomes)):
        image = images.get(case, [root / "Dataset ISPY" / case / IMAGE_FILE])[0]
        mask = masks.get(case, [root / "Tumor_segmentation_new" / f"{case}{MASK_SUFFIX}"])[0]
        record = Record(id=case, label=None, image=image, mask=mask)
        for what, found in (("volume", images), ("tumour mask", masks)):
            paths = found.get(case, [])
            if len(paths) > 1:
                listed = ", ".join(str(p) for p in paths)
                record.problems.append(
                    DatasetItemError(
                        paths[0], f"{case} has {len(paths)} {what} files: {listed}; keep one"
                    )
                )
        if case not in images:
            record.problems.append(
                MissingFileError(image, f"volume not found (listed in {outcome_path.name})")
            )
        if case not in masks:
            record.problems.append(MissingFileError(mask, "tumour mask not found"))
        outcome = outcomes.get(case)
        if outcome is None:
            record.problems.append(
                DatasetItemError(image, f"{case} is missing from the outcome table {outcome_path}")
            )
        elif isinstance(outcome, str):
            record.problems.append(DatasetItemError(outcome_path, outcome))
        else:
            record.label = outcome
        records.append(record)
    return records


def split_cases(records: Sequence[Record], fractions: Sequence[float], seed: int) -> dict:
    """Case ids per split, stratified by pCR; cases without a usable label are in no split."""
    labelled = [r for r in records if r.label is not None]
    parts = stratified_split([r.label for r in labelled], fractions, seed)
    return {name: [labelled[i].id for i in positions] for name, positions in parts.items()}


def _read_slice(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed slice held by the record: image (H, W, 1) float32, mask (H, W) int64."""
    return record.extra["image"][..., None], record.extra["mask"].astype(np.int64)


def _cache_folder(cache_dir: str | Path | None) -> Path:
    """The folder preprocessed cases are cached in (default :func:`default_cache_dir`)."""
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cache folder {folder} is a file, not a folder")
    return folder


def _check_n_slices(n_slices: int) -> None:
    if isinstance(n_slices, bool) or not isinstance(n_slices, int) or n_slices < 1:
        raise ValueError(f"n_slices must be a positive integer, got {n_slices!r}")


def load_ispy1(
    root: Path,
    split: str,
    *,
    seed: int = 0,
    n_slices: int = 10,
    cache_dir: str | Path | None = None,
    split_fractions: Sequence[float] = DEFAULT_FRACTIONS,
    progress: bool = True,
    **common,
) -> SegmentationClassificationDataset:
    """The slices of the cases of ``split``; called by ``load_dataset("ispy1", ...)``.

    Items are single-channel slices (C = 1) with ids ``<case>_s<slice>``; ``.groups`` holds each
    item's case, the unit of the split.
    """
    _check_n_slices(n_slices)
    cache_dir = _cache_folder(cache_dir)
    records = case_records(Path(root))
    members = set(split_cases(records, split_fractions, seed)[split])
    # Cases without a usable pCR label belong to no split: they are reported in every split.
    cases = [r for r in records if r.id in members or r.label is None]

    items: list[Record] = []
    groups: list[str] = []
    for case in tqdm(cases, desc=f"I-SPY1 {split}", disable=not progress):
        if not case.problems:
            try:
                arrays = cached_case(case.id, case.image, case.mask, n_slices, cache_dir)
            except DatasetItemError as error:
                case.problems.append(error)
        if case.problems:
            items.append(case)
            groups.append(case.id)
            continue
        for position, index in enumerate(arrays["slices"]):
            items.append(
                Record(
                    id=f"{case.id}_s{int(index):03d}",
                    label=case.label,
                    image=case.image,
                    mask=case.mask,
                    extra={"image": arrays["images"][position], "mask": arrays["masks"][position]},
                )
            )
            groups.append(case.id)

    return SegmentationClassificationDataset(
        kind="ispy1",
        root=root,
        split=split,
        records=items,
        read=_read_slice,
        class_names=("no pCR", "pCR"),
        seg_class_names=("background", "tumour"),
        channels=1,
        groups=groups,
        **common,
    )


def preprocess_ispy1(
    root: str | Path,
    n_slices: int = 10,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Preprocess and cache every case under ``root`` (what ``umlkit preprocess`` runs).

    Returns:
        One row per case: ``case``, ``pcr``, ``slices`` (kept slice indices, empty on a
        problem) and ``problem`` (empty when the case is fine).

    Raises:
        ValueError: ``n_slices`` is not a positive integer.
    """
    _check_n_slices(n_slices)
    cache_dir = _cache_folder(cache_dir)
    rows = []
    for case in tqdm(case_records(Path(root)), desc="I-SPY1", disable=not progress):
        problem = "; ".join(str(p) for p in case.problems)
        slices: list[int] = []
        if not problem:
            try:
                arrays = cached_case(case.id, case.image, case.mask, n_slices, cache_dir)
                slices = arrays["slices"].tolist()
            except DatasetItemError as error:
                problem = str(error)
        rows.append({"case": case.id, "pcr": case.label, "slices": slices, "problem": problem})
    return pd.DataFrame(rows)
