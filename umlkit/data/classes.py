"""The image classes of a ``folder`` dataset: stated, not guessed.

A folder dataset's labels (``labels.csv``, column ``label``) are class indices 0, 1, ..., K-1. The
number of classes K comes from, in this order:

1. ``num_classes`` (``load_dataset(..., num_classes=3)``, ``TrainConfig.num_classes``,
   ``umlkit train --num-classes 3``);
2. a ``classes.txt`` in the dataset folder: one class name per line, in label order (the first
   line names label 0), so the classes also get names;
3. otherwise it is **inferred**: the largest label of every split's table, plus one (at least 2).

With K stated, a label outside 0 .. K-1 is a mistake, and it is refused, naming the table, the
line and the id (:func:`check_labels_in_range`). With K inferred, a typo cannot be told from a new
class: one ``2`` in a table of 0s and 1s would silently train a three-class model whose third class
has one image. So an inferred class with fewer than two training images is refused, naming its
lines (:func:`folder_classes`): state the classes, or correct the label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from umlkit.data.base import DatasetItemError, Record

#: The optional file of a folder dataset that names its classes, one per line, in label order.
CLASSES_FILE = "classes.txt"
#: How many lines a message lists before it says "and N more".
LINES_SHOWN = 5


@dataclass(frozen=True)
class FolderClasses:
    """The classes of a folder dataset and where their number came from."""

    names: tuple[str, ...]  # one per class, in label order
    source: str  # how messages name where the number came from, e.g. "num_classes=2"


def read_class_names(path: Path) -> tuple[str, ...]:
    """The class names a ``classes.txt`` lists: its non-empty lines, stripped, in order.

    Raises:
        ValueError: not UTF-8 text, fewer than two names, or a name listed twice (one line
            naming ``path``).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (save it as UTF-8, one name per line)") from None
    names = [line.strip() for line in text.splitlines()]
    names = [name for name in names if name]
    if len(names) < 2:
        raise ValueError(
            f"{path}: lists {len(names)} class name(s); a classifier needs at least 2 (one name "
            "per line, the first line naming label 0)"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: the class name {repeated[0]!r} is listed more than once")
    return tuple(names)


def _lines(lines: Sequence[int]) -> str:
    """``line 7`` / ``lines 7, 9`` / ``lines 2, 3, 4, 5, 6 and 3 more``."""
    shown = ", ".join(str(line) for line in lines[:LINES_SHOWN])
    more = f" and {len(lines) - LINES_SHOWN} more" if len(lines) > LINES_SHOWN else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"


def folder_classes(
    root: Path,
    num_classes: int | None,
    labels: Mapping[Path, Sequence[int | str]],
    train_table: Path | None,
) -> FolderClasses:
    """The classes of the folder dataset in ``root``: stated (``num_classes``, ``classes.txt``)
    or inferred from ``labels``, as the module docstring describes.

    Args:
        root: the dataset folder (where a ``classes.txt`` is looked for).
        num_classes: the number the caller stated, or ``None``.
        labels: every split's label table -> its labels in table order, each a class index or
            the problem of a label that is none (those rows are reported elsewhere).
        train_table: the table of the training images (the one table of a dataset without split
            folders), whose classes must each have two images when their number is inferred.

    Raises:
        ValueError: ``num_classes`` below 2 or not an integer; a ``classes.txt`` that lists fewer
            than two names, a name twice, or another number than ``num_classes``; an inferred
            class with fewer than two training images. Always one line.
    """
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    listed = root / CLASSES_FILE
    if listed.is_file():
        names = read_class_names(listed)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(
                f"num_classes={num_classes} but {listed} lists {len(names)} classes: state one "
                "number of classes"
            )
        return FolderClasses(names, f"the {len(names)} classes {listed} lists")
    if num_classes is not None:
        return FolderClasses(
            tuple(str(c) for c in range(num_classes)), f"num_classes={num_classes}"
        )
    found = [label for values in labels.values() for label in values if isinstance(label, int)]
    inferred = max(max(found, default=1) + 1, 2)
    if train_table is not None:
        _check_inferred_classes(root, train_table, labels.get(train_table, ()), inferred)
    return FolderClasses(
        tuple(str(c) for c in range(inferred)), f"{inferred} classes inferred from the labels"
    )


def _check_inferred_classes(
    root: Path, table: Path, labels: Sequence[int | str], num_classes: int
) -> None:
    """Refuse an inferred class with fewer than two rows in the training table ``table``."""
    if any(isinstance(label, str) for label in labels):
        return  # an unreadable label is reported on its row; the count would mislead
    rare = []
    for cls in range(num_classes):
        lines = [index + 2 for index, label in enumerate(labels) if label == cls]  # header: 1
        if len(lines) < 2:
            images = f"{len(lines)} training image{'' if len(lines) == 1 else 's'}"
            rare.append(f"class {cls} has {images}" + (f" ({_lines(lines)})" if lines else ""))
    if rare:
        raise ValueError(
            f"{table}: {'; '.join(rare)}, but with the number of classes inferred from the "
            f"labels (the largest + 1 = {num_classes}) every class needs at least two: correct "
            f"the label, or state the classes with num_classes or a {CLASSES_FILE} in {root}"
        )


def check_labels_in_range(
    records: Sequence[Record], table: Path, lines: Mapping[str, int], classes: FolderClasses
) -> None:
    """Add a problem to every record whose label is not one of ``classes`` (0 .. K-1).

    The problem names ``table``, the record's line in it (``lines``: id -> line) and where the
    number of classes came from; with ``on_error="raise"`` the dataset then refuses to load. The
    record's label is cleared, as for any unusable label, so a split drawn from one pool of
    images reports it in every split instead of placing it in one.
    """
    count = len(classes.names)
    for record in records:
        if record.label is not None and record.label >= count:
            record.problems.append(
                DatasetItemError(
                    table,
                    f"line {lines.get(record.id, '?')}: label {record.label} of id {record.id} "
                    f"is not one of the classes 0..{count - 1} ({classes.source})",
                )
            )
            record.label = None
