"""Loaders for the real datasets' on-disk layouts (and the synthetic ones written in them).

One entry point, :func:`load_dataset`, returns a torch ``Dataset`` of dict items::

    {"image": float32 (C, H, W) in [0, 1], "mask": int64 (H, W), "label": int64, "id": str}

* ``isic2017``: ISIC 2017 layout (:mod:`umlkit.data.layouts`); mask 0 background, 1 lesion;
  label 1 = melanoma.
* ``refuge``: REFUGE layout; mask 0 background, 1 rim, 2 cup (see :func:`disc_mask`);
  label 1 = glaucoma.
* ``ispy1``: I-SPY1 NIfTI volumes, sliced by :mod:`umlkit.data.ispy1`; one channel;
  mask 0 background, 1 tumour; label 1 = pathologic complete response (pCR).
* ``folder``: your own data (below); mask classes 0 .. K-1; labels from ``labels.csv``.

The synthetic kinds are accepted as aliases: ``derm`` and ``ood`` read as ``isic2017``,
``fundus`` as ``refuge``.

**folder** layout: ``images/<id>.<png|jpg|...>`` (one file per id), ``masks/<id>.png`` (class indices, or 0/255 for
a binary mask) and ``labels.csv`` with columns ``id,label``. With ``train/``, ``val/`` and
``test/`` subfolders (each in that layout) those are the splits; otherwise a seeded split
stratified by label (fractions ``split_fractions``, default 0.7 / 0.1 / 0.2). The number of image
classes is stated by ``num_classes`` or by an optional ``classes.txt`` in the dataset folder (one
class name per line, the first naming label 0), and a label outside it is refused; without
either it is inferred from the labels, and a class with fewer than two training images is
refused as a likely typo (:mod:`umlkit.data.classes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from umlkit.data import layouts
from umlkit.data.base import (
    DatasetItemError,
    MissingFileError,
    Record,
    SegmentationClassificationDataset,
    check_choice,
    parse_size,
    stratified_split,
)
from umlkit.data.classes import check_labels_in_range, folder_classes
from umlkit.data.images import read_image, read_mask

KINDS = ("isic2017", "refuge", "ispy1", "folder")
ALIASES = {"derm": "isic2017", "ood": "isic2017", "fundus": "refuge"}
SPLIT_NAMES = layouts.SPLITS
#: Options each kind accepts beyond the common arguments of :func:`load_dataset`.
KIND_OPTIONS = {
    "isic2017": (),
    "refuge": (),
    "ispy1": ("n_slices", "cache_dir", "split_fractions", "progress"),
    "folder": ("split_fractions", "num_seg_classes", "num_classes", "grayscale"),
}


def load_dataset(
    kind: str,
    root: str | Path,
    split: str = "train",
    size: int | Sequence[int] | None = None,
    on_error: str = "raise",
    seed: int = 0,
    cache: bool | str | Path | None = None,
    transform: Callable[[dict], dict] | None = None,
    **options,
) -> SegmentationClassificationDataset:
    """Load one split of a dataset stored in its real on-disk layout.

    Args:
        kind: ``"isic2017"``, ``"refuge"``, ``"ispy1"`` or ``"folder"`` (or the synthetic names
            ``"derm"``, ``"ood"``, ``"fundus"``).
        root: the dataset folder.
        split: ``"train"``, ``"val"`` or ``"test"``, mapped to the dataset's own folders.
        size: output size: an int (square), ``(H, W)``, or ``None`` to keep each image's native
            size (then batching needs equal sizes). Images are resized bilinearly, masks by
            nearest neighbour.
        on_error: ``"raise"``: a bad item raises an error naming its file (missing files and
            labels, or an id stored in two files, e.g. ``.jpg`` and ``.png``, when the dataset
            is built; unreadable files, image modes or value ranges that
            :func:`~umlkit.data.images.decode_image` refuses, wrong mask sizes or values when
            the item is read). ``"skip"``: every item is checked at once, bad ones are left out
            and listed in ``.report``.
        seed: seeds the splits that umlkit draws itself (``ispy1`` by patient, ``folder``
            without split folders).
        cache: keep read items in memory; default: when ``size`` is set and the items take at
            most 1 GiB. A folder (str or Path) also stores the decoded, resized split there as
            one ``.npz`` (with ``size`` set and ``on_error="raise"``): the first load reads
            every item, later loads in any process read that file, and a changed file of the
            dataset makes a new copy (:func:`~umlkit.data.base.array_cache_key`). The
            notebooks use ``data/cache/arrays``; the trainer and the semi-supervised loop use
            the folder of their configuration's ``array_cache`` where it is set.
        transform: called on each item dict after loading (e.g. a
            :class:`~umlkit.data.corruptions.Corruption`).
        **options: per kind: ``ispy1``: ``n_slices`` (10), ``cache_dir``, ``split_fractions``
            ((0.8, 0.1, 0.1)), ``progress``; ``folder``: ``split_fractions`` ((0.7, 0.1, 0.2)),
            ``num_seg_classes`` (2), ``num_classes`` (default: the lines of the folder's
            ``classes.txt``, else the largest label + 1), ``grayscale`` (False).

    Returns:
        A :class:`~umlkit.data.base.SegmentationClassificationDataset` with ``.ids``,
        ``.labels``, ``.metadata``, ``.report``, ``.class_names``, ``.num_seg_classes``...

    Raises:
        ValueError: an unknown kind, split, option or ``on_error``; a problem with the content
            of the dataset (the message names the file and the problem).
        FileNotFoundError: the root, a folder of the layout or a listed file is missing.
    """
    canonical = ALIASES.get(kind, kind)
    check_choice("kind", canonical, KINDS + tuple(ALIASES))
    check_choice("split", split, SPLIT_NAMES)
    check_choice("on_error", on_error, ("raise", "skip"))
    unknown = sorted(set(options) - set(KIND_OPTIONS[canonical]))
    if unknown:
        valid = ", ".join(KIND_OPTIONS[canonical]) or "none"
        raise ValueError(f"unknown option(s) {unknown} for kind {canonical!r}; valid: {valid}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} not found (or not a folder)")
    common = {
        "size": parse_size(size),
        "on_error": on_error,
        "cache": cache,
        "transform": transform,
    }
    if canonical == "isic2017":
        return _load_isic2017(root, split, **common)
    if canonical == "refuge":
        return _load_refuge(root, split, **common)
    if canonical == "ispy1":
        from umlkit.data.ispy1 import load_ispy1

        return load_ispy1(root, split, seed=seed, **common, **options)
    return _load_folder(root, split, seed=seed, **common, **options)


# ------------------------------------------------------------------------------------------ masks
def disc_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The full optic disc (rim and cup) of a REFUGE class mask: ``mask >= 1`` (boolean).

    The REFUGE challenge scores the disc as rim plus cup, so "disc Dice" compares these.
    """
    return mask >= 1


def cup_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The optic cup of a REFUGE class mask: ``mask == 2`` (boolean)."""
    return mask == 2


def rim_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The neuroretinal rim of a REFUGE class mask: ``mask == 1`` (boolean)."""
    return mask == 1


# --------------------------------------------------------------------------------------- helpers
def _binary_label(value, source: str) -> int | str:
    """A 0/1 label from a table cell (``1``, ``1.0``, ``"1"``), else a description of the problem."""
    label = _class_label(value, source)
    if not isinstance(label, int) or label > 1:
        return f"label {value!r} in {source} is not 0 or 1"
    return label


def _class_label(value, source: str) -> int | str:
    """A class index (a non-negative whole number) from a table cell, else the problem."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number < 0 or number != int(number):
        return f"label {value!r} in {source} is not a class index (0, 1, ...)"
    return int(number)


def _image_files(
    folder: Path, recursive: bool = False, suffixes: Sequence[str] = layouts.IMAGE_SUFFIXES
) -> dict[str, list[Path]]:
    """The files in ``folder`` (and below it with ``recursive``) whose suffix is one of
    ``suffixes`` (any case), grouped by stem (the item id): ``{id: [path, ...]}``, sorted.
    macOS's own files (``._<id>.png``, :func:`~umlkit.data.layouts.is_macos_metadata`) are
    left out."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(
        p
        for p in pattern
        if p.suffix.lower() in suffixes and p.is_file() and not layouts.is_macos_metadata(p)
    )
    found: dict[str, list[Path]] = {}
    for path in files:
        found.setdefault(path.stem, []).append(path)
    return found


def _one_file_per_id(
    found: dict[str, list[Path]], what: str
) -> tuple[dict[str, Path], dict[str, DatasetItemError]]:
    """Split ``{id: files}`` into the file of each id and a problem for each id with several.

    An id stored twice (``ISIC_0000003.jpg`` and ``ISIC_0000003.png``, or one name in two
    subfolders) is ambiguous: its problem names every file, and its record is left out (or
    raises) rather than reading one of them.
    """
    files = {stem: paths[0] for stem, paths in found.items()}
    problems = {
        stem: DatasetItemError(
            paths[0],
            f"id {stem} has {len(paths)} {what} files: {', '.join(str(p) for p in paths)}; "
            "keep one",
        )
        for stem, paths in found.items()
        if len(paths) > 1
    }
    return files, problems


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={columns[0]: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the label table ({error})") from error
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: the label table lacks the column(s) {missing} (it has {list(table.columns)})"
        )
    return table


def _records_from_tables(
    images: dict[str, Path],
    table: pd.DataFrame,
    id_column: str,
    label_column: str,
    table_path: Path,
    default_image: Callable[[str], Path],
    mask_path: Callable[[str], Path],
    parse_label: Callable[[object, str], int | str] = _binary_label,
    duplicates: dict[str, DatasetItemError] | None = None,
) -> list[Record]:
    """Records for the union of the images found and the ids listed, with their problems.

    ``duplicates`` holds the problem of each id stored in several image files
    (:func:`_one_file_per_id`).
    """
    duplicates = duplicates or {}
    labels: dict[str, int | str] = {}
    for image_id, value in zip(table[id_column], table[label_column], strict=True):
        image_id = str(image_id).strip()
        if image_id in labels:
            labels[image_id] = f"id {image_id} appears more than once in {table_path}"
        else:
            labels[image_id] = parse_label(value, str(table_path))
    records = []
    for image_id in sorted(set(images) | set(labels)):
        image = images.get(image_id, default_image(image_id))
        record = Record(id=image_id, label=None, image=image, mask=mask_path(image_id))
        if image_id in duplicates:
            record.problems.append(duplicates[image_id])
        if image_id not in images:
            record.problems.append(
                MissingFileError(image, f"image file not found (listed in {table_path.name})")
            )
        elif not record.mask.is_file():
            record.problems.append(MissingFileError(record.mask, "mask file not found"))
        label = labels.get(image_id)
        if label is None:
            record.problems.append(
                DatasetItemError(
                    image, f"id {image_id} is missing from the label table {table_path}"
                )
            )
        elif isinstance(label, str):
            record.problems.append(DatasetItemError(image, label))
        else:
            record.label = label
        records.append(record)
    return records


class ImageMaskReader:
    """Reads one record's image file and mask file (a class, not a closure, so that datasets
    pickle into DataLoader worker processes started with ``spawn``, the default on macOS)."""

    def __init__(self, mask_values: dict[int, int], grayscale: bool = False):
        self.mask_values = dict(mask_values)
        self.grayscale = grayscale

    def __call__(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(record.image, grayscale=self.grayscale)
        return image, read_mask(record.mask, self.mask_values, image.shape[:2])


# -------------------------------------------------------------------------------------- ISIC 2017
def _load_isic2017(root: Path, split: str, **common) -> SegmentationClassificationDataset:
    paths = layouts.isic_paths(root, split)
    for key in ("images", "masks"):
        if not paths[key].is_dir():
            raise FileNotFoundError(
                f"ISIC 2017 {split} split: folder {paths[key]} not found (expected the ISIC 2017 "
                f"layout: {paths['images'].name}/, {paths['masks'].name}/, {paths['labels'].name})"
            )
    if not paths["labels"].is_file():
        raise FileNotFoundError(f"ISIC 2017 {split} split: label table {paths['labels']} not found")
    found = {
        stem: files
        for stem, files in _image_files(paths["images"]).items()
        if stem.startswith("ISIC_") and not stem.endswith("_superpixels")
    }
    images, duplicates = _one_file_per_id(found, "image")
    if not images:
        raise ValueError(f"ISIC 2017 {split} split: no images (ISIC_*.jpg) in {paths['images']}")
    table = _read_csv(paths["labels"], layouts.ISIC_LABEL_COLUMNS[:2])
    records = _records_from_tables(
        images,
        table,
        "image_id",
        "melanoma",
        paths["labels"],
        default_image=lambda i: paths["images"] / f"{i}.jpg",
        mask_path=lambda i: paths["masks"] / layouts.isic_mask_name(i),
        duplicates=duplicates,
    )
    return SegmentationClassificationDataset(
        kind="isic2017",
        root=root,
        split=split,
        records=records,
        read=ImageMaskReader(layouts.ISIC_MASK_VALUES),
        class_names=("not melanoma", "melanoma"),
        seg_class_names=("background", "lesion"),
        **common,
    )


# ------------------------------------------------------------------------------------------ REFUGE
def _refuge_spreadsheet_labels(
    folders: Sequence[Path],
) -> tuple[dict[str, list], list[Path], list[Path]]:
    """Labels from every spreadsheet in ``folders`` with an image-name and a glaucoma column.

    Spreadsheets without those columns (e.g. fovea locations only) are not read for labels.

    Returns:
        ``(votes, used, ignored)``: image id -> ``[(spreadsheet name, value), ...]``, the
        spreadsheets read, and those without the columns (named when an image has no label).
    """
    votes: dict[str, list] = {}
    used, ignored = [], []
    for folder in folders:
        for path in sorted(folder.rglob("*.xlsx")):
            if path.name.startswith("~$") or layouts.is_macos_metadata(path):  # not tables
                continue
            try:
                table = pd.read_excel(path)
            except (ValueError, OSError, KeyError) as error:
                raise ValueError(f"{path}: cannot read the spreadsheet ({error})") from error
            names = [c for c in table.columns if str(c).strip().lower() == "imgname"]
            label_columns = [
                c
                for c in table.columns
                if "glaucoma" in str(c).lower() or str(c).strip().lower().startswith("label")
            ]
            if not names or not label_columns:
                ignored.append(path)
                continue
            used.append(path)
            for name, value in zip(table[names[0]], table[label_columns[0]], strict=True):
                votes.setdefault(Path(str(name).strip()).stem, []).append((path.name, value))
    return votes, used, ignored


def _set_refuge_label(
    record: Record, sheet_votes: list, sheets: list, ignored: Sequence[Path] = ()
) -> None:
    """Set ``record.label`` from its folders' names and the spreadsheets' votes, or record why
    it cannot be set (no vote, an unreadable vote, votes that disagree)."""
    image, mask, stem = record.image, record.mask, record.id
    votes = [
        (f"folder {p.parent.name}/", layouts.REFUGE_LABEL_FOLDERS[p.parent.name])
        for p in (image, mask)
        if p.parent.name in layouts.REFUGE_LABEL_FOLDERS
    ]
    votes += sheet_votes
    values = {source: _binary_label(value, source) for source, value in votes}
    bad = [v for v in values.values() if isinstance(v, str)]
    if not votes:
        if sheets:
            where = "not listed in " + ", ".join(str(s) for s in sheets)
        else:
            where = "no spreadsheet has ImgName and Glaucoma Label columns"
        if ignored:
            where += " (read without them: " + ", ".join(str(s) for s in ignored) + ")"
        record.problems.append(
            DatasetItemError(
                image,
                f"id {stem} has no glaucoma label: not in a Glaucoma/Non-Glaucoma folder, and "
                f"{where}",
            )
        )
    elif bad:
        record.problems.append(DatasetItemError(image, bad[0]))
    elif len(set(values.values())) > 1:
        said = ", ".join(f"{source} says {value}" for source, value in values.items())
        record.problems.append(DatasetItemError(image, f"glaucoma labels disagree: {said}"))
    else:
        record.label = next(iter(values.values()))


def _load_refuge(root: Path, split: str, **common) -> SegmentationClassificationDataset:
    names = layouts.REFUGE_FOLDERS[split]
    image_dir = layouts.find_folder(root, names["images"])
    gt_dir = layouts.find_folder(root, names["ground_truth"])
    for folder, key in ((image_dir, "images"), (gt_dir, "ground_truth")):
        if folder is None:
            raise FileNotFoundError(
                f"REFUGE {split} split: no folder named {' or '.join(names[key])} in {root} "
                "or two levels below"
            )
    mask_dir = layouts.find_folder(gt_dir, (layouts.REFUGE_MASK_FOLDER,))
    if mask_dir is None:
        raise FileNotFoundError(
            f"REFUGE {split} split: no {layouts.REFUGE_MASK_FOLDER}/ in {gt_dir}"
        )
    images, duplicates = _one_file_per_id(
        _image_files(image_dir, recursive=True, suffixes=(".jpg", ".jpeg", ".png")), "image"
    )
    if not images:
        raise ValueError(f"REFUGE {split} split: no images (*.jpg) in {image_dir}")
    masks, mask_duplicates = _one_file_per_id(
        _image_files(mask_dir, recursive=True, suffixes=(".bmp",)), "mask"
    )
    sheet_votes, sheets, ignored = _refuge_spreadsheet_labels([gt_dir, image_dir])

    records = []
    for stem, image in images.items():
        mask = masks.get(stem, mask_dir / f"{stem}.bmp")
        record = Record(id=stem, label=None, image=image, mask=mask)
        record.problems += [d[stem] for d in (duplicates, mask_duplicates) if stem in d]
        if stem not in masks:
            record.problems.append(MissingFileError(mask, "mask file not found"))
        _set_refuge_label(record, sheet_votes.get(stem, []), sheets, ignored)
        records.append(record)
    return SegmentationClassificationDataset(
        kind="refuge",
        root=root,
        split=split,
        records=records,
        read=ImageMaskReader(layouts.REFUGE_MASK_VALUES),
        class_names=("non-glaucoma", "glaucoma"),
        seg_class_names=layouts.REFUGE_SEG_CLASSES,
        **common,
    )


# ------------------------------------------------------------------------------------------ folder
def _folder_labels(
    table: pd.DataFrame, paths: dict[str, Path], split_dirs: list[Path], base: Path
) -> dict[Path, list[int | str]]:
    """Every split's label table -> its labels (class indices, or the problem of a label that is
    none): this split's ``table`` and the other splits' files, so that all splits agree on the
    number of classes (:func:`umlkit.data.classes.folder_classes`)."""
    tables = {paths["labels"]: table}
    for folder in split_dirs:
        path = folder / layouts.FOLDER_LAYOUT["labels"]
        if folder != base and path.is_file():
            tables[path] = _read_csv(path, ("id", "label"))
    return {path: [_class_label(v, str(path)) for v in t["label"]] for path, t in tables.items()}


def _folder_paths(root: Path, split: str) -> tuple[list[Path], Path, dict[str, Path]]:
    """Where a folder dataset's split lives: ``(split_dirs, base, paths)``.

    ``split_dirs`` are the split subfolders (``train/``, ``val/``, ``test/``) that hold an
    ``images/`` folder; when there are none the whole of ``root`` is one pool that is split by
    label. ``base`` is the folder of this split, ``paths`` its ``images``, ``masks`` and
    ``labels`` entries of :data:`~umlkit.data.layouts.FOLDER_LAYOUT`, each checked to exist.
    """
    split_dirs = [root / name for name in SPLIT_NAMES if (root / name / "images").is_dir()]
    base = root / split if split_dirs else root
    paths = {key: base / name for key, name in layouts.FOLDER_LAYOUT.items()}
    for key in ("images", "masks"):
        if not paths[key].is_dir():
            raise FileNotFoundError(
                f"folder dataset: {paths[key]} not found (expected images/, masks/ and "
                f"labels.csv in {base})"
            )
    if not paths["labels"].is_file():
        raise FileNotFoundError(f"folder dataset: label table {paths['labels']} not found")
    return split_dirs, base, paths


def _folder_records(paths: dict[str, Path]) -> tuple[list[Record], pd.DataFrame]:
    """One record per image of ``paths["images"]``, labelled from ``labels.csv``, and the table."""
    images, duplicates = _one_file_per_id(_image_files(paths["images"]), "image")
    if not images:
        raise ValueError(
            f"folder dataset: no images ({', '.join(layouts.IMAGE_SUFFIXES)}) in {paths['images']}"
        )
    table = _read_csv(paths["labels"], ("id", "label"))
    table["id"] = table["id"].astype(str).str.strip()
    records = _records_from_tables(
        images,
        table,
        "id",
        "label",
        paths["labels"],
        default_image=lambda i: paths["images"] / f"{i}.png",
        mask_path=lambda i: paths["masks"] / f"{i}.png",
        parse_label=_class_label,
        duplicates=duplicates,
    )
    return records, table


def _records_of_split(
    records: list[Record], split: str, split_fractions: Sequence[float], seed: int
) -> list[Record]:
    """The records of ``split`` when one pool is split by label (:func:`stratified_split`)."""
    labelled = [r for r in records if r.label is not None]
    parts = stratified_split([r.label for r in labelled], split_fractions, seed)
    chosen = {labelled[i].id for i in parts[split]}
    # Items without a usable label cannot be placed in a split: they are reported in each.
    return [r for r in records if r.id in chosen or r.label is None]


def _folder_mask_values(num_seg_classes: int) -> dict[int, int]:
    """Stored mask value -> pixel class: each class by its index, and 255 as the foreground of a
    two-class mask (the usual black-and-white mask)."""
    mask_values = {value: value for value in range(num_seg_classes)}
    if num_seg_classes == 2:
        mask_values[255] = 1
    return mask_values


def _load_folder(
    root: Path,
    split: str,
    *,
    seed: int,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    num_seg_classes: int = 2,
    num_classes: int | None = None,
    grayscale: bool = False,
    **common,
) -> SegmentationClassificationDataset:
    if not isinstance(num_seg_classes, int) or not 2 <= num_seg_classes <= 255:
        raise ValueError(f"num_seg_classes must be an integer in [2, 255], got {num_seg_classes!r}")
    split_dirs, base, paths = _folder_paths(root, split)
    records, table = _folder_records(paths)
    train_table = (
        root / "train" / layouts.FOLDER_LAYOUT["labels"] if split_dirs else paths["labels"]
    )
    labels = _folder_labels(table, paths, split_dirs, base)
    classes = folder_classes(
        root, num_classes, labels, train_table if train_table in labels else None
    )
    lines = {image_id: index + 2 for index, image_id in enumerate(table["id"])}  # header: line 1
    check_labels_in_range(records, paths["labels"], lines, classes)  # before a split: in every one
    if not split_dirs:
        records = _records_of_split(records, split, split_fractions, seed)
    return SegmentationClassificationDataset(
        kind="folder",
        root=root,
        split=split,
        records=records,
        read=ImageMaskReader(_folder_mask_values(num_seg_classes), grayscale=grayscale),
        class_names=classes.names,
        seg_class_names=("background", "foreground")
        if num_seg_classes == 2
        else tuple(f"class {c}" for c in range(num_seg_classes)),
        channels=1 if grayscale else 3,
        **common,
    )
