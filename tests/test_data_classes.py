"""umlkit.data.classes: a folder dataset's classes are stated (num_classes, classes.txt) or, when
inferred, every class has two training images; a label outside them is refused by file and line."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from umlkit.data import load_dataset
from umlkit.data.classes import read_class_names

#: A binary dataset: 5 images of class 0 and 5 of class 1 (ids a0..a9, label = index % 2).
BINARY = {f"a{k}": k % 2 for k in range(10)}
#: Three splits of 6 / 2 / 2 images, each class in each split.
FRACTIONS = (0.6, 0.2, 0.2)


def write_folder(root: Path, labels: dict[str, object]) -> Path:
    """A ``folder`` dataset without split folders: 8x8 images, empty masks, ``labels.csv``."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for k, image_id in enumerate(labels):
        Image.fromarray(np.full((8, 8, 3), 20 * k, dtype=np.uint8)).save(
            root / "images" / f"{image_id}.png"
        )
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "masks" / f"{image_id}.png")
    rows = "".join(f"{image_id},{label}\n" for image_id, label in labels.items())
    (root / "labels.csv").write_text("id,label\n" + rows)
    return root


def load(root: Path, split: str = "train", **options):
    return load_dataset("folder", root, split, split_fractions=FRACTIONS, **options)


def test_a_binary_dataset_with_one_label_2_is_refused_naming_its_line(tmp_path):
    root = write_folder(tmp_path, {**BINARY, "a3": 2})  # a typo: a3 is on line 5 (header: 1)
    for split in ("train", "val", "test"):
        with pytest.raises(ValueError) as caught:
            load(root, split)
        assert str(caught.value) == (
            f"{root / 'labels.csv'}: class 2 has 1 training image (line 5), but with the number "
            "of classes inferred from the labels (the largest + 1 = 3) every class needs at "
            f"least two: correct the label, or state the classes with num_classes or a "
            f"classes.txt in {root}"
        )
    assert load(write_folder(tmp_path / "fine", BINARY)).num_classes == 2


def test_an_inferred_class_without_images_is_refused_too(tmp_path):
    root = write_folder(tmp_path, {image_id: 0 for image_id in BINARY})  # no image of class 1
    with pytest.raises(ValueError, match=r"labels\.csv: class 1 has 0 training images, but"):
        load(root)
    assert load(root, num_classes=2).num_classes == 2  # stated: a class may be absent


def test_a_stated_number_refuses_a_label_outside_it_in_every_split(tmp_path):
    root = write_folder(tmp_path, {**BINARY, "a3": 2})
    line = f"{root / 'labels.csv'}: line 5: label 2 of id a3 is not one of the classes 0..1"
    for split in ("train", "val", "test"):
        with pytest.raises(ValueError, match=re.escape(f"{line} (num_classes=2)")):
            load(root, split, num_classes=2)
    kept = load(root, num_classes=2, on_error="skip")
    assert "a3" not in kept.ids and kept.num_classes == 2
    assert kept.report == [(str(root / "labels.csv"), f"{line.split(': ', 1)[1]} (num_classes=2)")]
    assert load(root, num_classes=3).num_classes == 3  # three stated classes: 2 is one of them


def test_classes_txt_states_the_number_and_names_the_classes(tmp_path):
    root = write_folder(tmp_path, {**BINARY, "a3": 2})
    (root / "classes.txt").write_text("\ufeffbenign\r\n malignant \n\n")  # BOM, CRLF, spaces
    with pytest.raises(ValueError, match=re.escape(f"classes 0..1 (the 2 classes {root}")):
        load(root)
    (root / "labels.csv").write_text((root / "labels.csv").read_text().replace("a3,2", "a3,1"))
    data = load(root)
    assert data.class_names == ("benign", "malignant") and data.num_classes == 2
    assert load(root, num_classes=2).class_names == ("benign", "malignant")
    with pytest.raises(ValueError, match=r"^num_classes=3 but .*classes\.txt lists 2 classes"):
        load(root, num_classes=3)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("benign\n", "lists 1 class name(s)"),
        ("a\nb\na\n", "the class name 'a' is listed"),
        ("bénin\nmalin\n", "not UTF-8 text (save it as UTF-8, one name per line)"),
    ],
)
def test_a_classes_txt_that_cannot_be_used_is_one_line(tmp_path, text, problem):
    path = tmp_path / "classes.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(f"{path}: {problem}")):
        read_class_names(path)


@pytest.mark.parametrize("bad", [1, True, 2.0])
def test_num_classes_must_be_a_whole_number_of_at_least_two(tmp_path, bad):
    root = write_folder(tmp_path, BINARY)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        load(root, num_classes=bad)


def test_split_folders_infer_from_every_split_and_check_the_training_one(tmp_path):
    splits = {"train": {"a": 0, "b": 0, "c": 1, "d": 1}, "val": {"e": 2}, "test": {"f": 0}}
    for split, labels in splits.items():
        write_folder(tmp_path / split, labels)
    # the validation table's 2 makes a third class that no training image has
    message = f"{tmp_path / 'train' / 'labels.csv'}: class 2 has 0 training images"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("folder", tmp_path, "test")
    assert load_dataset("folder", tmp_path, "test", num_classes=3).num_classes == 3
