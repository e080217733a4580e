"""Synthetic datasets written in the on-disk layout of the real datasets they stand in for.

No dataset can be downloaded here, so umlkit draws its own, with a known answer: every image's
label is drawn from a known probability ``p_true`` of its (recorded) factors, so the best any
classifier can do (the Bayes-optimal accuracy, AUC and Brier score) is computable, and the
calibration of a model can be checked against the truth rather than against noisy labels.

* ``derm``: ISIC 2017 layout; label melanoma, from the lesion's border irregularity, asymmetry,
  colour variegation and size.
* ``fundus``: REFUGE layout; label glaucoma, from the vertical cup-to-disc ratio.
* ``ood``: ISIC 2017 layout, all in the test split; images unlike skin for out-of-distribution
  detection; their label is a placeholder 0 and ``p_true`` is NaN.

Besides the real layout (see :mod:`umlkit.data.layouts`), the dataset root holds
``umlkit_metadata.csv`` (one row per image: id, split, label, ``p_true``, every factor and nuisance
flag, the image and mask paths) and, once generation has finished, ``umlkit_synthetic.json`` (the
parameters and the list of files written). The scene models are described in
:mod:`umlkit.data.scenes`.

Choices worth knowing:

* ``seborrheic_keratosis`` in the ISIC label CSV is always 0 (the synthetic lesions are
  melanoma or nevus; nevus = both columns 0, as in ISIC).
* REFUGE labels are stored as the real dataset stores them: by folder for training
  (``Glaucoma/``, ``Non-Glaucoma/``), in a spreadsheet (``Glaucoma_labels.xlsx``, columns
  ``ImgName``, ``Glaucoma Label``) for validation and test, and for test also by mask folder
  (``G/``, ``N/``). The real spreadsheets have other file names; the loader reads any.
* Images are split in order of their index (first 70 % train, ...); they are drawn
  independently, so this is as good as a random split.
* Every image's randomness comes from ``SeedSequence([seed, kind, index])``: its factors and
  pixels do not depend on the order of generation or on ``n`` (its split and, for REFUGE, its
  file name may). The same seed gives byte-identical files with
  the same Pillow/libjpeg build (JPEG encoders of other builds may differ in the last bits).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from umlkit.data import layouts
from umlkit.data.scenes import FAMILIES
from umlkit.folders import reporting_write_errors

MANIFEST_NAME = "umlkit_synthetic.json"
METADATA_NAME = "umlkit_metadata.csv"
#: Bumped whenever the drawing changes, so an old dataset is never mistaken for a new one.
GENERATOR_VERSION = 4  # 3: derm asymmetry in harmonics 3-5; 4: variegation patches of fixed area
SYNTHETIC_KINDS = ("derm", "fundus", "ood")
DEFAULT_SPLITS = {"derm": (0.7, 0.1, 0.2), "fundus": (0.7, 0.1, 0.2), "ood": (0.0, 0.0, 1.0)}
#: Which real loader reads each synthetic kind.
LOADER_KIND = {"derm": "isic2017", "fundus": "refuge", "ood": "isic2017"}
REFUGE_XLSX_NAME = "Glaucoma_labels.xlsx"
_KIND_CODE = {"derm": 1, "fundus": 2, "ood": 3}
_JPEG_OPTIONS = {"format": "JPEG", "quality": 95, "subsampling": 0}


# ---------------------------------------------------------------------------------------- metadata
def split_counts(n: int, splits: Sequence[float]) -> tuple[int, int, int]:
    """Numbers of train / val / test images: rounded fractions, the test split takes the rest."""
    n_train = int(round(n * splits[0]))
    n_val = min(int(round(n * splits[1])), n - n_train)
    return n_train, n_val, n - n_train - n_val


def _check_arguments(kind: str, n: int, size: int, seed: int, splits) -> tuple[float, ...]:
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"kind={kind!r} is not a synthetic kind; choose one of {SYNTHETIC_KINDS}")
    for name, value, low in (("n", n, 1), ("size", size, 16), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    splits = DEFAULT_SPLITS[kind] if splits is None else tuple(float(f) for f in splits)
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(
            f"splits must be three non-negative fractions (train, val, test) summing to 1, "
            f"got {splits}"
        )
    return splits


def _image_rngs(kind: str, seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Two independent generators for image ``index``: one for its factors, one for drawing it."""
    factor_seed, draw_seed = np.random.SeedSequence([seed, _KIND_CODE[kind], index]).spawn(2)
    return np.random.default_rng(factor_seed), np.random.default_rng(draw_seed)


def synthetic_metadata(
    kind: str = "derm", n: int = 1000, seed: int = 0, splits: Sequence[float] | None = None
) -> pd.DataFrame:
    """The metadata table of a synthetic dataset, without drawing any image.

    Cheap (no pixels), so a notebook can study the label model, e.g. the Bayes-optimal scores of
    a 100 000-image dataset. :func:`make_synthetic` writes exactly this table (for the same
    arguments) as ``umlkit_metadata.csv``.

    Args:
        kind: ``"derm"``, ``"fundus"`` or ``"ood"``.
        n: number of images.
        seed: the dataset's seed.
        splits: train / val / test fractions; default (0.7, 0.1, 0.2), for ``ood`` all test.

    Returns:
        One row per image: ``id``, ``index``, ``split``, ``label``, ``p_true``, the factors and
        nuisance flags of :mod:`umlkit.data.scenes`, and the relative ``image`` and ``mask`` paths.

    Raises:
        ValueError: an unknown kind or a bad ``n``, ``seed`` or ``splits``.
    """
    splits = _check_arguments(kind, n, 16, seed, splits)
    factor_fn = FAMILIES[kind][0]
    counts = split_counts(n, splits)
    split_of = np.repeat(layouts.SPLITS, counts)
    rows = []
    for index in range(n):
        factors = factor_fn(_image_rngs(kind, seed, index)[0])
        rows.append({"index": index, "split": split_of[index], **factors})
    table = pd.DataFrame(rows)
    naming = _refuge_names if kind == "fundus" else _isic_names
    table = pd.concat([table, naming(table)], axis=1)
    first = ["id", "index", "split", "label", "p_true"]
    return table[first + [c for c in table.columns if c not in first]]


def _isic_names(table: pd.DataFrame) -> pd.DataFrame:
    ids = [f"ISIC_{index:07d}" for index in table["index"]]
    folders = {split: layouts.isic_paths(Path(), split) for split in layouts.SPLITS}
    images, masks = [], []
    for image_id, split in zip(ids, table["split"], strict=True):
        images.append(f"{folders[split]['images'].as_posix()}/{image_id}.jpg")
        masks.append(f"{folders[split]['masks'].as_posix()}/{layouts.isic_mask_name(image_id)}")
    return pd.DataFrame({"id": ids, "image": images, "mask": masks}, index=table.index)


def _refuge_names(table: pd.DataFrame) -> pd.DataFrame:
    """REFUGE names: g0001 / n0001 in training (numbered per class), V0001 and T0001 otherwise."""
    counters = {"g": 0, "n": 0, "V": 0, "T": 0}
    ids, images, masks = [], [], []
    for split, label in zip(table["split"], table["label"], strict=True):
        image_dir = layouts.REFUGE_FOLDERS[split]["images"][0]
        mask_dir = (
            f"{layouts.REFUGE_FOLDERS[split]['ground_truth'][0]}/{layouts.REFUGE_MASK_FOLDER}"
        )
        if split == "train":
            prefix = "g" if label else "n"
            folder = "Glaucoma" if label else "Non-Glaucoma"
            image_dir, mask_dir = f"{image_dir}/{folder}", f"{mask_dir}/{folder}"
        else:
            prefix = "V" if split == "val" else "T"
            if split == "test":
                mask_dir = f"{mask_dir}/{'G' if label else 'N'}"
        counters[prefix] += 1
        name = f"{prefix}{counters[prefix]:04d}"
        ids.append(name)
        images.append(f"{image_dir}/{name}.jpg")
        masks.append(f"{mask_dir}/{name}.bmp")
    return pd.DataFrame({"id": ids, "image": images, "mask": masks}, index=table.index)


# -------------------------------------------------------------------------------------- the writer
def make_synthetic(
    root: str | Path,
    kind: str = "derm",
    n: int = 1000,
    size: int = 128,
    seed: int = 0,
    splits: Sequence[float] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Write a synthetic dataset in the on-disk layout of the real one (see the module docstring).

    Idempotent: over a complete dataset with the same parameters it returns at once. It never
    mixes datasets and never deletes what it did not write:

    * ``root`` missing or empty: the dataset is written.
    * complete, same parameters: nothing is done.
    * complete with other parameters, or interrupted (umlkit's files but no manifest), or files
      missing: ``FileExistsError``, unless ``overwrite=True``, which deletes ``root`` and writes
      it again, but only when every file in it is one umlkit writes.
    * any other file in ``root``: ``FileExistsError`` naming it, whatever ``overwrite`` says.

    Args:
        root: the dataset folder (created).
        kind: ``"derm"`` (ISIC 2017 layout), ``"fundus"`` (REFUGE) or ``"ood"`` (ISIC 2017, test).
        n: number of images.
        size: image side in pixels (images are square).
        seed: the dataset's seed; image ``i`` depends only on ``(seed, kind, i)``.
        splits: train / val / test fractions; default (0.7, 0.1, 0.2), for ``ood`` all test.
        progress: show a tqdm progress bar.
        overwrite: regenerate a folder umlkit wrote with other parameters or did not finish.
        workers: processes drawing the images (each image has its own random generator, so the
            files are the same for any number); a few seconds of start-up make it worth it
            from a few thousand images on.

    Returns:
        ``root`` as a :class:`~pathlib.Path`; read it with
        ``load_dataset(LOADER_KIND[kind], root, split)`` (or simply ``load_dataset(kind, root)``).

    Raises:
        ValueError: a bad ``kind``, ``n``, ``size``, ``seed`` or ``splits``.
        FileExistsError: ``root`` holds something else (see above); the message says what.
        umlkit.folders.CannotWriteError: ``root`` cannot be written (a full disk, no
            permission, a read-only file system); one line naming ``root`` and the cause.
    """
    splits = _check_arguments(kind, n, size, seed, splits)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    root = Path(root)
    params = {
        "generator": "umlkit.data.make_synthetic",
        "version": GENERATOR_VERSION,
        "kind": kind,
        "n": int(n),
        "size": int(size),
        "seed": int(seed),
        "splits": list(splits),
    }
    if _check_root(root, params, overwrite):
        return root

    # a full disk, a missing permission, a read-only file system: one line naming root
    with reporting_write_errors(root):
        table = synthetic_metadata(kind, n, seed, splits)
        factor_columns = [
            c for c in table.columns if c not in ("id", "index", "split", "image", "mask")
        ]
        records = table.to_dict("records")
        chunks = [records[start : start + 250] for start in range(0, len(records), 250)]
        # closed on an error too, so that the error's line starts on a line of its own
        with tqdm(total=len(records), desc=f"synthetic {kind}", disable=not progress) as bar:
            if workers == 1 or len(chunks) == 1:
                for chunk in chunks:
                    _write_images(root, kind, size, seed, chunk, factor_columns)
                    bar.update(len(chunk))
            else:
                # "spawn": forking a process that already runs torch threads can deadlock.
                with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                    jobs = [
                        pool.submit(_write_images, root, kind, size, seed, chunk, factor_columns)
                        for chunk in chunks
                    ]
                    for job in as_completed(jobs):
                        bar.update(job.result())

        written = [*table["image"], *table["mask"]]
        written += _write_label_tables(root, table, kind)
        table.to_csv(root / METADATA_NAME, index=False)
        written.append(METADATA_NAME)
        manifest = {**params, "files": sorted([*written, MANIFEST_NAME])}
        (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return root


def _write_images(
    root: Path, kind: str, size: int, seed: int, rows: list[dict], factor_columns: list[str]
) -> int:
    """Draw and save the images and masks of ``rows`` (metadata records); returns their number."""
    draw = FAMILIES[kind][1]
    for row in rows:
        factors = {name: row[name] for name in factor_columns}
        image, mask = draw(factors, size, _image_rngs(kind, seed, row["index"])[1])
        _save_pair(root, row["image"], row["mask"], image, mask, kind)
    return len(rows)


def _save_pair(
    root: Path, image_path: str, mask_path: str, image: np.ndarray, mask: np.ndarray, kind: str
) -> None:
    for relative in (image_path, mask_path):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / image_path, **_JPEG_OPTIONS)
    if kind == "fundus":
        grey = {cls: value for value, cls in layouts.REFUGE_MASK_VALUES.items()}
        encoded = np.select([mask == 0, mask == 1, mask == 2], [grey[0], grey[1], grey[2]])
        Image.fromarray(encoded.astype(np.uint8)).save(root / mask_path, format="BMP")
    else:
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / mask_path, format="PNG")


def _write_label_tables(root: Path, table: pd.DataFrame, kind: str) -> list[str]:
    """Write the per-split label files of the layout; return their relative paths."""
    written = []
    for split in layouts.SPLITS:
        part = table[table["split"] == split]
        if part.empty:
            continue
        if kind == "fundus":
            if split == "train":  # the training labels are the folder names, as in REFUGE
                continue
            gt = layouts.REFUGE_FOLDERS[split]["ground_truth"][0]
            path = f"{gt}/{REFUGE_XLSX_NAME}"
            names = pd.DataFrame(
                {
                    layouts.REFUGE_XLSX_COLUMNS[0]: part["id"] + ".jpg",
                    layouts.REFUGE_XLSX_COLUMNS[1]: part["label"].astype(int),
                }
            )
            _write_xlsx(names, root / path)
        else:
            csv = layouts.isic_paths(Path(), split)["labels"]
            path = csv.as_posix()
            labels = pd.DataFrame(
                {
                    "image_id": part["id"],
                    "melanoma": part["label"].astype(float),
                    "seborrheic_keratosis": 0.0,
                }
            )
            labels.to_csv(root / path, index=False)
        written.append(path)
    return written


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """Write a spreadsheet with fixed zip timestamps and document dates, so it is byte-stable.

    openpyxl stamps the current time into the zip entries and into ``docProps/core.xml``;
    rewriting both makes the same table give the same bytes.
    """
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    fixed_date = "2017-01-01T00:00:00Z"
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            data = source.read(entry.filename)
            if entry.filename == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fixed_date.encode(), data)
            info = zipfile.ZipInfo(entry.filename, date_time=(2017, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)


# ------------------------------------------------------------------------- is the folder ours?
def _own_patterns(kind: str) -> list[re.Pattern]:
    """Regular expressions matching every relative path that ``make_synthetic(kind=...)`` writes."""
    common = [re.escape(MANIFEST_NAME), re.escape(METADATA_NAME)]
    if kind == "fundus":
        val_images, test_images = (layouts.REFUGE_FOLDERS[s]["images"][0] for s in ("val", "test"))
        val_gt, test_gt = (layouts.REFUGE_FOLDERS[s]["ground_truth"][0] for s in ("val", "test"))
        masks = layouts.REFUGE_MASK_FOLDER
        train = layouts.REFUGE_FOLDERS["train"]
        patterns = [
            rf"{train['images'][0]}/(Glaucoma/g|Non-Glaucoma/n)\d{{4,}}\.jpg",
            rf"{train['ground_truth'][0]}/{masks}/(Glaucoma/g|Non-Glaucoma/n)\d{{4,}}\.bmp",
            rf"{re.escape(val_images)}/V\d{{4,}}\.jpg",
            rf"{re.escape(val_gt)}/{masks}/V\d{{4,}}\.bmp",
            rf"{re.escape(val_gt)}/{re.escape(REFUGE_XLSX_NAME)}",
            rf"{test_images}/T\d{{4,}}\.jpg",
            rf"{re.escape(test_gt)}/{masks}/[GN]/T\d{{4,}}\.bmp",
            rf"{re.escape(test_gt)}/{re.escape(REFUGE_XLSX_NAME)}",
        ]
    else:
        words = "|".join(layouts.ISIC_SPLIT_WORDS.values())
        patterns = [
            rf"ISIC-2017_({words})_Data/ISIC_\d{{7}}\.jpg",
            rf"ISIC-2017_({words})_Part1_GroundTruth/ISIC_\d{{7}}_segmentation\.png",
            rf"ISIC-2017_({words})_Part3_GroundTruth\.csv",
        ]
    return [re.compile(p) for p in common + patterns]


def _foreign_files(root: Path, kind: str) -> tuple[list[str], int]:
    """Relative paths under ``root`` that ``kind``'s generator would not write, and the file count."""
    patterns = _own_patterns(kind)
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()]
    foreign = sorted(f for f in files if not any(p.fullmatch(f) for p in patterns))
    return foreign, len(files)


def _describe(params: dict) -> str:
    keys = ("kind", "n", "size", "seed", "splits", "version")
    return ", ".join(f"{k}={params.get(k)!r}" for k in keys)


def _read_manifest(path: Path) -> tuple[dict | None, str]:
    """The generator's record in ``path``, or ``None`` and why (missing, or damaged)."""
    if not path.is_file():
        return None, f"no {MANIFEST_NAME}; generation was interrupted?"
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict):
        return None, f"its {MANIFEST_NAME} is damaged: not the JSON record umlkit writes"
    return manifest, ""


def _check_root(root: Path, params: dict, overwrite: bool) -> bool:
    """Decide what to do with an existing ``root``: True = complete already, False = (re)write.

    Deletes ``root`` only when ``overwrite`` is set and every file in it is one umlkit writes.
    """
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if not root.exists() or not any(root.iterdir()):
        return False
    manifest, why = _read_manifest(root / MANIFEST_NAME)
    if isinstance(manifest, dict) and manifest.get("generator") == params["generator"]:
        same = all(manifest.get(k) == v for k, v in params.items())
        missing = [f for f in manifest.get("files", []) if not (root / f).is_file()]
        if same and not missing:
            return True
        if same:
            problem = (
                f"{root} holds an incomplete umlkit synthetic dataset: {len(missing)} of its "
                f"files are missing (e.g. {missing[0]})"
            )
        elif all(manifest.get(k) == v for k, v in params.items() if k != "version"):
            problem = (
                f"{root} was written by another version of umlkit's generator "
                f"(version {manifest.get('version')!r}, this one is {params['version']}), so its "
                "images differ from what this version draws"
            )
        else:
            problem = (
                f"{root} holds another umlkit synthetic dataset ({_describe(manifest)}); "
                f"you asked for {_describe(params)}"
            )
        kind = manifest.get("kind", params["kind"])
        kind = kind if kind in SYNTHETIC_KINDS else params["kind"]
    else:
        kind = params["kind"]
        problem = None
    foreign, n_files = _foreign_files(root, kind)
    if problem is None and n_files == 0:  # only empty folders: nothing to lose, write into it
        return False
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise FileExistsError(
            f"{root} is not an empty folder nor a synthetic {kind} dataset written by umlkit: "
            f"it holds {shown}. Choose another folder; umlkit never deletes files it did not write."
        )
    if problem is None:
        problem = (
            f"{root} holds {n_files} files of an unfinished umlkit synthetic {kind} dataset ({why})"
        )
    if not overwrite:
        raise FileExistsError(
            f"{problem}. Delete the folder, or pass overwrite=True to let umlkit delete it and "
            "generate it again."
        )
    shutil.rmtree(root)
    return False


# ------------------------------------------------------------------------- Bayes-optimal scores
def bayes_optimal_scores(
    metadata_or_root: pd.DataFrame | str | Path, split: str | None = None
) -> dict[str, float]:
    """The scores of the Bayes-optimal classifier, which knows each image's true probability.

    With p_i = ``p_true`` and y_i the drawn label of image i (n images):

    * ``expected_accuracy`` = (1/n) sum_i max(p_i, 1 - p_i): the accuracy the rule
      "predict 1 iff p_i > 1/2" reaches on average over the label draws; no classifier of the
      factors does better.
    * ``accuracy`` = (1/n) sum_i 1[(p_i > 1/2) = y_i]: what that rule reaches on these labels.
    * ``auc``: ROC AUC of p against y (scikit-learn); ``nan`` if only one class is present.
    * ``brier`` = (1/n) sum_i (p_i - y_i)^2, the binary (positive-class) Brier score; the
      two-class "summed over classes" convention of :mod:`umlkit.metrics` is twice this.
    * ``prevalence`` = mean(y), ``n``.

    A model sees the image, not the factors, and nuisances (hair, blur, low contrast) hide some
    of them, so these are upper bounds on what a model can reach on the images.

    Args:
        metadata_or_root: the metadata table (:func:`synthetic_metadata`), a path to
            ``umlkit_metadata.csv`` or a dataset root holding it.
        split: restrict to ``"train"``, ``"val"`` or ``"test"``; ``None`` uses all images.

    Raises:
        FileNotFoundError: no metadata file at the given path.
        ValueError: missing ``p_true``/``label`` columns, probabilities outside [0, 1] or NaN
            (e.g. the ``ood`` set), labels other than 0/1, an unknown or empty split.
    """
    from sklearn.metrics import roc_auc_score

    table = _read_metadata(metadata_or_root)
    missing = {"p_true", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"metadata lacks the column(s) {sorted(missing)}")
    if split is not None:
        if split not in layouts.SPLITS:
            raise ValueError(f"split={split!r}: choose one of {layouts.SPLITS} or None")
        table = table[table["split"] == split]
    if table.empty:
        raise ValueError(f"no images in the metadata (split={split!r})")
    p = table["p_true"].to_numpy(dtype=float)
    y = table["label"].to_numpy()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(
            "p_true must lie in [0, 1] for every image (the ood set has no true probability)"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    y = y.astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(p)),
        "prevalence": float(y.mean()),
        "expected_accuracy": float(np.maximum(p, 1 - p).mean()),
        "accuracy": float(((p > 0.5).astype(int) == y).mean()),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "brier": float(((p - y) ** 2).mean()),
    }


def _read_metadata(source: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic metadata at {path}")
    return pd.read_csv(path)
