"""Tests of umlkit.data.loaders, umlkit.data.base and umlkit.data.ispy1 on tiny fixture layouts.

The fixtures write a few images of a few dozen pixels in each real on-disk layout; tests that
need a broken dataset damage them.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import umlkit.data.ispy1 as ispy1
from umlkit.data import (
    Corruption,
    DatasetItemError,
    MissingFileError,
    cup_mask,
    disc_mask,
    load_dataset,
    rim_mask,
    stratified_split,
)
from umlkit.data.base import SegmentationClassificationDataset, parse_size, resize_item

#: Image size of the layout fixtures: H x W, deliberately not square.
HEIGHT, WIDTH = 24, 32


def write_rgb(path: Path, seed: int, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """Write a random RGB image (format from the suffix) and return its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def write_grey(path: Path, values: np.ndarray) -> None:
    """Write an 8-bit grey image (PNG or BMP from the suffix) holding exactly ``values``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)


def binary_mask(seed: int, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """A 0/255 mask with a rectangle whose size depends on ``seed``."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[4 : 8 + seed % 10, 5 : 9 + seed % 12] = 255
    return mask


def refuge_mask(shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """REFUGE encoding: 255 background, a 10 x 12 disc of 128 (rim) holding a 4 x 6 cup of 0."""
    mask = np.full(shape, 255, dtype=np.uint8)
    mask[6:16, 8:20] = 128
    mask[9:13, 11:17] = 0
    return mask


#: Labels of the ISIC fixture per split (melanoma = 1).
ISIC_LABELS = {"train": [0, 1, 0, 1, 0, 1], "val": [1, 0], "test": [0, 1]}


@pytest.fixture
def isic_root(tmp_path: Path) -> Path:
    """ISIC 2017 layout: 6 / 2 / 2 images, labels as floats (``0.0``) like the real CSVs."""
    root = tmp_path / "isic"
    index = 0
    for split, labels in ISIC_LABELS.items():
        word = {"train": "Training", "val": "Validation", "test": "Test_v2"}[split]
        rows = []
        for label in labels:
            image_id = f"ISIC_{index:07d}"
            write_rgb(root / f"ISIC-2017_{word}_Data" / f"{image_id}.jpg", index)
            mask_path = (
                root / f"ISIC-2017_{word}_Part1_GroundTruth" / f"{image_id}_segmentation.png"
            )
            write_grey(mask_path, binary_mask(index))
            rows.append(
                {"image_id": image_id, "melanoma": float(label), "seborrheic_keratosis": 0.0}
            )
            index += 1
        pd.DataFrame(rows).to_csv(root / f"ISIC-2017_{word}_Part3_GroundTruth.csv", index=False)
    return root


@pytest.fixture
def refuge_root(tmp_path: Path) -> Path:
    """REFUGE layout: training labels by folder, validation by spreadsheet, test by both.

    Training: g0001, g0002 (glaucoma), n0001-n0003; validation V0001-V0003 with labels 1, 0, 0;
    test T0001-T0003 with labels 0, 1, 0 (masks under G/ and N/ and in a spreadsheet). The
    spreadsheet names differ from the synthetic writer's on purpose.
    """
    root = tmp_path / "refuge"
    mask = refuge_mask()
    seed = 0
    for folder, prefix, count in (("Glaucoma", "g", 2), ("Non-Glaucoma", "n", 3)):
        for k in range(1, count + 1):
            write_rgb(root / "Training400" / folder / f"{prefix}{k:04d}.jpg", seed)
            bmp = (
                root / "Annotation-Training400" / "Disc_Cup_Masks" / folder / f"{prefix}{k:04d}.bmp"
            )
            write_grey(bmp, mask)
            seed += 1
    for k in (1, 2, 3):
        write_rgb(root / "REFUGE-Validation400" / f"V{k:04d}.jpg", seed)
        write_grey(root / "REFUGE-Validation400-GT" / "Disc_Cup_Masks" / f"V{k:04d}.bmp", mask)
        seed += 1
    pd.DataFrame(
        {
            "ImgName": [f"V{k:04d}.jpg" for k in (1, 2, 3)],
            "Fovea_X": 1.0,
            "Glaucoma Label": [1, 0, 0],
        }
    ).to_excel(root / "REFUGE-Validation400-GT" / "Fovea_locations.xlsx", index=False)
    for k, label in enumerate([0, 1, 0], start=1):
        write_rgb(root / "Test400" / f"T{k:04d}.jpg", seed)
        sub = "G" if label else "N"
        write_grey(root / "REFUGE-Test-GT" / "Disc_Cup_Masks" / sub / f"T{k:04d}.bmp", mask)
        seed += 1
    pd.DataFrame(
        {"ImgName": [f"T{k:04d}.jpg" for k in (1, 2, 3)], "Glaucoma Label": [0, 1, 0]}
    ).to_excel(root / "REFUGE-Test-GT" / "Glaucoma_label_and_Fovea_location.xlsx", index=False)
    return root


#: I-SPY1 fixture: 10 patients, 6 without and 4 with pCR.
ISPY_PCR = {
    1001: 0,
    1002: 1,
    1003: 0,
    1004: 0,
    1005: 1,
    1006: 0,
    1007: 1,
    1008: 0,
    1009: 0,
    1010: 1,
}
#: Volume shape (x, y, z); tumour on slices 2-6, largest on slice 4.
ISPY_SHAPE = (12, 10, 8)


def ispy_volumes(subject: int) -> tuple[np.ndarray, np.ndarray]:
    """A DCE-MRI-like volume and its tumour mask; the tumour is widest in x (axis 0)."""
    rng = np.random.default_rng(subject)
    image = rng.uniform(0.0, 100.0, ISPY_SHAPE).astype(np.float32)
    mask = np.zeros(ISPY_SHAPE, dtype=np.uint8)
    for z, half in ((2, 0), (3, 1), (4, 2), (5, 1), (6, 0)):
        mask[4 - half : 6 + half + 1, 3:5, z] = 1
    image[mask > 0] += 200.0
    return image, mask


@pytest.fixture
def ispy_root(tmp_path: Path) -> Path:
    """I-SPY1 layout: ``Dataset ISPY/ISPY_<id>/DCEMRI_1.nii``, masks, ``outcome_new.xlsx``."""
    root = tmp_path / "ispy"
    for subject in ISPY_PCR:
        image, mask = ispy_volumes(subject)
        case = root / "Dataset ISPY" / f"ISPY_{subject}"
        case.mkdir(parents=True)
        nib.Nifti1Image(image, np.eye(4)).to_filename(case / "DCEMRI_1.nii")
        masks = root / "Tumor_segmentation_new"
        masks.mkdir(exist_ok=True)
        nib.Nifti1Image(mask, np.eye(4)).to_filename(masks / f"ISPY_{subject}_tumor_mask.nii")
    pd.DataFrame({"SUBJECTID": list(ISPY_PCR), "PCR": list(ISPY_PCR.values())}).to_excel(
        root / "outcome_new.xlsx", index=False
    )
    return root


#: Labels of the folder fixture: 5 of class 0, 5 of class 1.
FOLDER_LABELS = {f"img{k:02d}": k % 2 for k in range(10)}


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """``folder`` layout without split folders: images/*.png, masks/*.png (0/255), labels.csv."""
    root = tmp_path / "folder"
    for k, image_id in enumerate(FOLDER_LABELS):
        write_rgb(root / "images" / f"{image_id}.png", k, shape=(16, 16))
        write_grey(root / "masks" / f"{image_id}.png", binary_mask(k, shape=(16, 16)))
    pd.DataFrame({"id": list(FOLDER_LABELS), "label": list(FOLDER_LABELS.values())}).to_csv(
        root / "labels.csv", index=False
    )
    return root


TRAIN_IMAGES = "ISIC-2017_Training_Data"
TRAIN_MASKS = "ISIC-2017_Training_Part1_GroundTruth"
TRAIN_CSV = "ISIC-2017_Training_Part3_GroundTruth.csv"


# -------------------------------------------------------------------------------------- ISIC 2017
def test_isic_reads_labels_masks_and_splits(isic_root):
    for split, labels in ISIC_LABELS.items():
        data = load_dataset("isic2017", isic_root, split)
        assert data.labels.tolist() == labels
        assert data.num_seg_classes == 2 and data.class_names == ("not melanoma", "melanoma")
        assert data.metadata is None and data.report == []
    data = load_dataset("isic2017", isic_root, "train")
    item = data[3]
    assert item["id"] == "ISIC_0000003" and item["label"].item() == 1
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, HEIGHT, WIDTH)
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["mask"].dtype == torch.int64
    # The stored 0/255 mask becomes 0/1, pixel for pixel.
    assert torch.equal(item["mask"], torch.from_numpy(binary_mask(3) // 255).long())
    assert item["label"].dtype == torch.int64


def test_synthetic_metadata_rows_follow_the_items(isic_root):
    ids = load_dataset("isic2017", isic_root, "val").ids
    rows = pd.DataFrame({"id": list(reversed(ids)), "noise": range(len(ids))})
    rows.to_csv(isic_root / "umlkit_metadata.csv", index=False)
    data = load_dataset("isic2017", isic_root, "val")
    assert data.metadata["id"].tolist() == ids
    assert data.metadata["noise"].tolist() == list(reversed(range(len(ids))))


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "not a readable CSV table (No columns to parse from file)"),
        (b"\xff\xfe\x00garbage", "not a readable CSV table ("),
        (b"name,noise\nISIC_0000000,1\n", "no 'id' column: regenerate the data with umlkit synth"),
        (b"id,noise\nISIC_0000000,1\nISIC_0000000,2\n", "id ISIC_0000000 is listed twice"),
    ],
)
def test_damaged_synthetic_metadata_raises_naming_it(isic_root, content, problem):
    path = isic_root / "umlkit_metadata.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetItemError) as error:
        load_dataset("isic2017", isic_root, "train")
    assert str(error.value).startswith(f"{path}: {problem}")


def test_resizing_is_bilinear_for_images_and_nearest_for_masks(isic_root):
    data = load_dataset("isic2017", isic_root, "train", size=(12, 16))
    item = data[0]
    assert item["image"].shape == (3, 12, 16) and item["mask"].shape == (12, 16)
    assert set(item["mask"].unique().tolist()) <= {0, 1}
    # Nearest neighbour at pixel centres: output pixel i covers input pixels 2i and 2i + 1 and
    # takes the one under its centre, (i + 1/2) * 2 = 2i + 1.
    assert torch.equal(item["mask"], torch.from_numpy(binary_mask(0)[1::2, 1::2] // 255).long())
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch["image"].shape == (4, 3, 12, 16) and len(batch["id"]) == 4


def test_cache_keeps_items_in_memory(isic_root):
    cached = load_dataset("isic2017", isic_root, "train", size=16, cache=True)
    fresh = load_dataset("isic2017", isic_root, "train", size=16, cache=False)
    first = cached[0]["image"].clone()
    assert torch.equal(first, fresh[0]["image"])
    write_rgb(isic_root / TRAIN_IMAGES / "ISIC_0000000.jpg", 1234)  # change the file on disk
    assert torch.equal(cached[0]["image"], first)  # the cache still serves the first read
    assert not torch.equal(fresh[0]["image"], first)  # without cache the file is read again


def test_array_store_is_written_once_then_read_instead_of_the_files(
    isic_root, tmp_path, monkeypatch
):
    store = tmp_path / "arrays"
    fresh = load_dataset("isic2017", isic_root, "train", size=(12, 16), cache=False)
    fresh = [fresh[index] for index in range(len(fresh))]  # decoded from the files
    first = load_dataset("isic2017", isic_root, "train", size=(12, 16), cache=store)
    assert len(list(store.glob("isic2017-train-*.npz"))) == 1
    assert not list(store.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although the split is stored")

    monkeypatch.setattr(SegmentationClassificationDataset, "_load", no_decoding)
    second = load_dataset("isic2017", isic_root, "train", size=(12, 16), cache=store)
    for index in range(len(fresh)):
        for loaded in (first, second):
            item = loaded[index]
            assert torch.equal(item["image"], fresh[index]["image"])  # exact float32 values
            assert torch.equal(item["mask"], fresh[index]["mask"])
            assert item["mask"].dtype == torch.int64 and item["id"] == fresh[index]["id"]
            assert int(item["label"]) == int(fresh[index]["label"])
    second[0]["image"].zero_()  # items are copies: the stored split is not altered
    assert torch.equal(second[0]["image"], fresh[0]["image"])


def test_array_store_is_keyed_by_the_files_and_the_size(isic_root, tmp_path):
    store = tmp_path / "arrays"
    before = load_dataset("isic2017", isic_root, "train", size=16, cache=store)[0]["image"]
    load_dataset("isic2017", isic_root, "train", size=8, cache=store)
    load_dataset("isic2017", isic_root, "val", size=16, cache=store)
    assert len(list(store.glob("*.npz"))) == 3
    old = set(store.glob("isic2017-train-*.npz"))
    write_rgb(isic_root / TRAIN_IMAGES / "ISIC_0000000.jpg", 1234)  # rewrite one image
    after = load_dataset("isic2017", isic_root, "train", size=16, cache=store)[0]["image"]
    assert not torch.equal(after, before)  # the changed file was read, not the stale copy
    assert torch.equal(after, load_dataset("isic2017", isic_root, "train", size=16)[0]["image"])
    # the new copy replaced the stale one of the same split and size; the 8-px copy stays
    new = set(store.glob("isic2017-train-*.npz"))
    assert len(new) == 2 and len(new - old) == 1 and len(old - new) == 1


def test_array_store_sees_an_image_edited_in_place_with_its_time_put_back(folder_root, tmp_path):
    options = {"size": 16, "cache": tmp_path / "arrays", "split_fractions": (0.6, 0.2, 0.2)}
    image_id = load_dataset("folder", folder_root, "train", **{**options, "cache": False}).ids[0]
    # An uncompressed BMP keeps its size whatever its pixels: only the content changes.
    (folder_root / "images" / f"{image_id}.png").unlink()
    image = folder_root / "images" / f"{image_id}.bmp"
    write_rgb(image, 0, shape=(16, 16))
    index = load_dataset("folder", folder_root, "train", **options).ids.index(image_id)
    before = load_dataset("folder", folder_root, "train", **options)[index]["image"]
    stat = image.stat()
    time.sleep(0.05)  # file times come from a coarse clock (a few ms): let it tick
    write_rgb(image, 1, shape=(16, 16))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size
    after = load_dataset("folder", folder_root, "train", **options)[index]["image"]
    assert not torch.equal(after, before)  # decoded again, not the stale stored copy
    fresh = load_dataset("folder", folder_root, "train", size=16, split_fractions=(0.6, 0.2, 0.2))
    assert torch.equal(after, fresh[index]["image"])


def test_array_store_rewrites_a_damaged_file_and_skips_native_size(isic_root, tmp_path):
    store = tmp_path / "arrays"
    load_dataset("isic2017", isic_root, "train", size=16, cache=store)
    (stored,) = store.glob("*.npz")
    stored.write_bytes(b"not an npz file")
    again = load_dataset("isic2017", isic_root, "train", size=16, cache=store)
    assert torch.equal(
        again[1]["image"], load_dataset("isic2017", isic_root, "train", size=16)[1]["image"]
    )
    assert np.load(stored)["images"].shape == (6, 3, 16, 16)  # written again, whole
    native = tmp_path / "native"
    load_dataset("isic2017", isic_root, "train", size=None, cache=native)
    assert not native.exists()  # native sizes differ per image: nothing to store


def test_array_store_raises_naming_a_bad_file(isic_root, tmp_path):
    (isic_root / TRAIN_IMAGES / "ISIC_0000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetItemError, match="ISIC_0000001.jpg"):
        load_dataset("isic2017", isic_root, "train", size=16, cache=tmp_path / "arrays")
    assert not list((tmp_path / "arrays").glob("*.npz"))


def test_transform_is_applied_to_items(isic_root):
    noisy = load_dataset(
        "isic2017", isic_root, "train", transform=Corruption("gaussian_noise", 0.2, seed=1)
    )
    clean = load_dataset("isic2017", isic_root, "train")
    assert not torch.equal(noisy[0]["image"], clean[0]["image"])
    assert torch.equal(noisy[0]["mask"], clean[0]["mask"])


def test_missing_image_raises_naming_it(isic_root):
    (isic_root / TRAIN_IMAGES / "ISIC_0000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"ISIC_0000002\.jpg: image file not found"):
        load_dataset("isic2017", isic_root, "train")


def test_missing_mask_raises_naming_it(isic_root):
    (isic_root / TRAIN_MASKS / "ISIC_0000001_segmentation.png").unlink()
    with pytest.raises(MissingFileError, match=r"ISIC_0000001_segmentation\.png: mask file not"):
        load_dataset("isic2017", isic_root, "train")


def test_unreadable_image_raises_when_read(isic_root):
    (isic_root / TRAIN_IMAGES / "ISIC_0000001.jpg").write_bytes(b"not a jpeg")
    data = load_dataset("isic2017", isic_root, "train")  # cheap checks pass
    with pytest.raises(ValueError, match=r"ISIC_0000001\.jpg: cannot read the image"):
        data[1]


def test_mask_of_another_size_raises(isic_root):
    mask = isic_root / TRAIN_MASKS / "ISIC_0000004_segmentation.png"
    write_grey(mask, np.zeros((HEIGHT + 1, WIDTH), dtype=np.uint8))
    data = load_dataset("isic2017", isic_root, "train")
    with pytest.raises(ValueError, match=r"ISIC_0000004_segmentation\.png: mask is 32x25 .* 32x24"):
        data[4]


def test_mask_values_outside_the_set_raise(isic_root):
    mask = binary_mask(0)
    mask[0, 0] = 7
    write_grey(isic_root / TRAIN_MASKS / "ISIC_0000000_segmentation.png", mask)
    data = load_dataset("isic2017", isic_root, "train")
    with pytest.raises(
        DatasetItemError, match=r"holds the value\(s\) \[7\], expected only \[0, 255\]"
    ):
        data[0]


def test_id_missing_from_the_label_table_raises(isic_root):
    write_rgb(isic_root / TRAIN_IMAGES / "ISIC_0000099.jpg", 99)
    write_grey(isic_root / TRAIN_MASKS / "ISIC_0000099_segmentation.png", binary_mask(99))
    with pytest.raises(
        ValueError, match=r"id ISIC_0000099 is missing from the label table .*Part3"
    ):
        load_dataset("isic2017", isic_root, "train")


def test_bad_label_value_raises(isic_root):
    table = pd.read_csv(isic_root / TRAIN_CSV)
    table.loc[2, "melanoma"] = 0.5
    table.to_csv(isic_root / TRAIN_CSV, index=False)
    with pytest.raises(ValueError, match=r"label 0\.5 in .* is not 0 or 1"):
        load_dataset("isic2017", isic_root, "train")


def test_id_stored_with_two_extensions_raises_naming_both_files(isic_root):
    images = isic_root / TRAIN_IMAGES
    write_rgb(images / "ISIC_0000003.png", 99)
    jpg, png = images / "ISIC_0000003.jpg", images / "ISIC_0000003.png"
    problem = f"id ISIC_0000003 has 2 image files: {jpg}, {png}; keep one"
    with pytest.raises(DatasetItemError, match=re.escape(problem)):
        load_dataset("isic2017", isic_root, "train")
    data = load_dataset("isic2017", isic_root, "train", on_error="skip")
    assert "ISIC_0000003" not in data.ids and len(data) == 5
    assert data.report == [(str(jpg), problem)]


def test_empty_folder_raises(isic_root):
    for path in (isic_root / TRAIN_IMAGES).iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=r"no images \(ISIC_\*\.jpg\) in .*Training_Data"):
        load_dataset("isic2017", isic_root, "train")


def test_missing_layout_folder_or_table_raises(isic_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset root .*nowhere not found"):
        load_dataset("isic2017", tmp_path / "nowhere")
    (isic_root / TRAIN_CSV).unlink()
    with pytest.raises(FileNotFoundError, match=r"label table .*Part3_GroundTruth\.csv not found"):
        load_dataset("isic2017", isic_root, "train")
    with pytest.raises(FileNotFoundError, match="ISIC-2017_Training_Data not found"):
        load_dataset("isic2017", tmp_path, "train")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"kind": "isic"},
            r"kind='isic' is not valid; choose one of isic2017, refuge, ispy1, folder",
        ),
        ({"split": "training"}, r"split='training' is not valid; choose one of train, val, test"),
        ({"on_error": "ignore"}, r"on_error='ignore' is not valid"),
        ({"size": 32.0}, r"^size must be a positive integer, got 32\.0$"),
        ({"size": True}, r"^size must be a positive integer, got True$"),
        ({"size": 0}, r"^size must be a positive integer, got 0$"),
        ({"size": -4}, r"^size must be a positive integer, got -4$"),
        ({"size": (32, 0)}, r"^size must be a pair \(H, W\) of positive integers, got \(32, 0\)$"),
        ({"size": (16.0, 16)}, r"size must be a pair \(H, W\) of positive integers"),
        ({"size": (16, 16, 3)}, r"size must be a pair \(H, W\) of positive integers"),
        ({"size": "32"}, r"size must be a positive integer, a pair \(H, W\) of them or None"),
        ({"n_slices": 3}, r"unknown option\(s\) \['n_slices'\] for kind 'isic2017'"),
    ],
)
def test_bad_arguments_raise(isic_root, kwargs, message):
    arguments = {"kind": "isic2017", "root": isic_root, **kwargs}
    with pytest.raises(ValueError, match=message):
        load_dataset(**arguments)


def test_size_accepts_numpy_integers_and_pairs(isic_root):
    square = load_dataset("isic2017", isic_root, "val", size=np.int64(8))[0]
    assert square["image"].shape == (3, 8, 8)
    pair = load_dataset("isic2017", isic_root, "val", size=[6, 10])[0]
    assert pair["image"].shape == (3, 6, 10) and pair["mask"].shape == (6, 10)


def test_skip_mode_leaves_bad_items_out_and_reports_them(isic_root):
    (isic_root / TRAIN_IMAGES / "ISIC_0000001.jpg").write_bytes(b"broken")
    write_grey(isic_root / TRAIN_MASKS / "ISIC_0000002_segmentation.png", np.ones((3, 3)))
    (isic_root / TRAIN_IMAGES / "ISIC_0000005.jpg").unlink()
    write_rgb(isic_root / TRAIN_IMAGES / "ISIC_0000077.jpg", 77)
    data = load_dataset("isic2017", isic_root, "train", on_error="skip")
    assert data.ids == ["ISIC_0000000", "ISIC_0000003", "ISIC_0000004"]
    assert data.labels.tolist() == [0, 1, 0]
    images, masks = isic_root / TRAIN_IMAGES, isic_root / TRAIN_MASKS
    expected = [
        (images / "ISIC_0000001.jpg", "cannot read the image"),
        (masks / "ISIC_0000002_segmentation.png", "mask is 3x3 (WxH) but its image is 32x24"),
        (images / "ISIC_0000005.jpg", "image file not found (listed in"),
        (masks / "ISIC_0000077_segmentation.png", "mask file not found"),
        (images / "ISIC_0000077.jpg", "id ISIC_0000077 is missing from the label table"),
    ]
    assert len(data.report) == len(expected)
    for path, problem in expected:
        assert any(p == str(path) and problem in text for p, text in data.report), (path, problem)
    assert [data[k]["id"] for k in range(len(data))] == data.ids


# ------------------------------------------------------------------------------------------ REFUGE
def test_refuge_reads_labels_from_folders_and_spreadsheets(refuge_root):
    train = load_dataset("refuge", refuge_root, "train")
    assert dict(zip(train.ids, train.labels.tolist(), strict=True)) == {
        "g0001": 1, "g0002": 1, "n0001": 0, "n0002": 0, "n0003": 0,
    }  # fmt: skip
    val = load_dataset("refuge", refuge_root, "val")
    assert val.ids == ["V0001", "V0002", "V0003"] and val.labels.tolist() == [1, 0, 0]
    test = load_dataset("refuge", refuge_root, "test")
    assert test.labels.tolist() == [0, 1, 0]
    assert train.num_seg_classes == 3 and train.seg_class_names == ("background", "rim", "cup")


def test_refuge_mask_values_are_mapped_to_classes(refuge_root):
    mask = load_dataset("refuge", refuge_root, "val")[0]["mask"]
    stored = torch.from_numpy(refuge_mask())
    assert torch.equal(mask == 0, stored == 255)  # background
    assert torch.equal(mask == 1, stored == 128)  # rim
    assert torch.equal(mask == 2, stored == 0)  # cup
    assert disc_mask(mask).sum() == 10 * 12 and cup_mask(mask).sum() == 4 * 6
    assert rim_mask(mask).sum() == 10 * 12 - 4 * 6
    assert np.array_equal(disc_mask(mask.numpy()), (refuge_mask() < 255))


def test_refuge_conflicting_labels_raise(refuge_root):
    sheet = refuge_root / "REFUGE-Test-GT" / "Glaucoma_label_and_Fovea_location.xlsx"
    pd.DataFrame(
        {"ImgName": ["T0001.jpg", "T0002.jpg", "T0003.jpg"], "Glaucoma Label": [1, 1, 0]}
    ).to_excel(sheet, index=False)
    with pytest.raises(ValueError, match=r"T0001\.jpg: glaucoma labels disagree: folder N/ says 0"):
        load_dataset("refuge", refuge_root, "test")


def test_refuge_unlabelled_image_and_bad_mask_value(refuge_root):
    write_rgb(refuge_root / "REFUGE-Validation400" / "V0004.jpg", 40)
    write_grey(
        refuge_root / "REFUGE-Validation400-GT" / "Disc_Cup_Masks" / "V0004.bmp", refuge_mask()
    )
    sheet = refuge_root / "REFUGE-Validation400-GT" / "Fovea_locations.xlsx"
    message = (
        rf"V0004\.jpg: id V0004 has no glaucoma label: .* and not listed in {re.escape(str(sheet))}"
    )
    with pytest.raises(ValueError, match=message):
        load_dataset("refuge", refuge_root, "val")
    mask = refuge_mask()
    mask[0, 0] = 64
    write_grey(refuge_root / "REFUGE-Validation400-GT" / "Disc_Cup_Masks" / "V0002.bmp", mask)
    data = load_dataset("refuge", refuge_root, "val", on_error="skip")
    assert data.ids == ["V0001", "V0003"]
    problems = " | ".join(problem for _, problem in data.report)
    assert "V0004 has no glaucoma label" in problems and "[64]" in problems


def test_refuge_names_a_spreadsheet_it_could_not_read_labels_from(refuge_root):
    sheet = refuge_root / "REFUGE-Validation400-GT" / "Fovea_locations.xlsx"
    pd.DataFrame({"Image": ["V0001.jpg"], "Diagnosis": [1]}).to_excel(sheet, index=False)
    message = (
        r"V0001\.jpg: id V0001 has no glaucoma label: not in a Glaucoma/Non-Glaucoma folder, "
        rf"and no spreadsheet has ImgName and Glaucoma Label columns \(read without them: {re.escape(str(sheet))}\)"
    )
    with pytest.raises(ValueError, match=message):
        load_dataset("refuge", refuge_root, "val")


def test_refuge_id_stored_twice_raises_naming_both_files(refuge_root):
    glaucoma = refuge_root / "Training400" / "Glaucoma" / "g0001.jpg"
    copy = refuge_root / "Training400" / "Non-Glaucoma" / "g0001.jpg"
    write_rgb(copy, 7)
    with pytest.raises(
        ValueError, match=re.escape(f"id g0001 has 2 image files: {glaucoma}, {copy}")
    ):
        load_dataset("refuge", refuge_root, "train")
    copy.unlink()
    write_rgb(glaucoma.with_suffix(".png"), 7)
    with pytest.raises(ValueError, match=re.escape(f"{glaucoma}, {glaucoma.with_suffix('.png')}")):
        load_dataset("refuge", refuge_root, "train")
    glaucoma.with_suffix(".png").unlink()
    masks = refuge_root / "REFUGE-Test-GT" / "Disc_Cup_Masks"
    write_grey(masks / "G" / "T0001.bmp", refuge_mask())  # T0001 is already under N/
    data = load_dataset("refuge", refuge_root, "test", on_error="skip")
    assert data.ids == ["T0002", "T0003"]
    expected = (
        f"id T0001 has 2 mask files: {masks / 'G' / 'T0001.bmp'}, {masks / 'N' / 'T0001.bmp'}"
    )
    # The first problem; the mask under G/ also votes "glaucoma" against the spreadsheet.
    assert data.report[0] == (str(masks / "G" / "T0001.bmp"), expected + "; keep one")


def test_refuge_missing_folder_raises(refuge_root):
    for path in sorted((refuge_root / "Test400").iterdir()):
        path.unlink()
    (refuge_root / "Test400").rmdir()
    with pytest.raises(FileNotFoundError, match="no folder named Test400 or REFUGE-Test400"):
        load_dataset("refuge", refuge_root, "test")


# ------------------------------------------------------------------------------------------ I-SPY1
def _ispy(root, tmp_path, split="train", **options):
    options = {"cache_dir": tmp_path / "cache", "progress": False, **options}
    return load_dataset("ispy1", root, split, **options)


def test_ispy_keeps_slices_around_the_largest_tumour_area(ispy_root, tmp_path):
    data = _ispy(ispy_root, tmp_path, n_slices=3)
    case = data.groups[0]
    ids = [i for i, g in zip(data.ids, data.groups, strict=True) if g == case]
    assert ids == [f"{case}_s003", f"{case}_s004", f"{case}_s005"]
    item = data[1]  # slice 4, the largest tumour
    assert item["image"].shape == (1, 10, 12)  # (C, y, x): slices are transposed
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    expected = np.zeros((10, 12), dtype=np.int64)
    expected[3:5, 2:9] = 1  # x 2..8 (widest), y 3..4
    assert np.array_equal(item["mask"].numpy(), expected)
    assert data.num_seg_classes == 2 and data.class_names == ("no pCR", "pCR")


def test_ispy_fills_up_with_tumour_free_slices(ispy_root, tmp_path):
    data = _ispy(ispy_root, tmp_path, n_slices=7)
    slices = [
        int(i.rsplit("_s", 1)[1])
        for i, g in zip(data.ids, data.groups, strict=True)
        if g == data.groups[0]
    ]
    # Tumour on 2..6 (5 slices); the two nearest tumour-free ones are 1 and 7.
    assert slices == [1, 2, 3, 4, 5, 6, 7]


def test_ispy_splits_by_patient_and_stratifies(ispy_root, tmp_path):
    fractions = (0.6, 0.2, 0.2)
    splits = {
        s: _ispy(ispy_root, tmp_path, s, n_slices=2, split_fractions=fractions)
        for s in ("train", "val", "test")
    }
    patients = {s: set(d.groups) for s, d in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert set().union(*patients.values()) == {f"ISPY_{s}" for s in ISPY_PCR}
    # 6 without pCR -> 4 / 1 / 1, 4 with pCR -> 2 / 1 / 1 (rounded cumulative fractions).
    for split, counts in (("train", (4, 2)), ("val", (1, 1)), ("test", (1, 1))):
        pcr = [ISPY_PCR[int(p.split("_")[1])] for p in patients[split]]
        assert (pcr.count(0), pcr.count(1)) == counts
        data = splits[split]
        assert all(
            data.labels[k] == ISPY_PCR[int(g.split("_")[1])] for k, g in enumerate(data.groups)
        )
    again = _ispy(ispy_root, tmp_path, "val", n_slices=2, split_fractions=fractions)
    assert set(again.groups) == patients["val"]
    other_seed = [
        set(_ispy(ispy_root, tmp_path, "val", n_slices=2, split_fractions=fractions, seed=s).groups)
        for s in range(1, 6)
    ]
    assert any(groups != patients["val"] for groups in other_seed)


def test_ispy_cache_is_reused_and_keyed_by_parameters(ispy_root, tmp_path, monkeypatch):
    first = _ispy(ispy_root, tmp_path, "test", n_slices=3)
    assert len(list((tmp_path / "cache").glob("ISPY_*.npz"))) == len(set(first.groups))

    def fail(*args, **kwargs):
        raise AssertionError("preprocessing ran although the cache holds the result")

    monkeypatch.setattr(ispy1, "preprocess_case", fail)
    second = _ispy(ispy_root, tmp_path, "test", n_slices=3)
    assert torch.equal(first[0]["image"], second[0]["image"])
    with pytest.raises(AssertionError, match="preprocessing ran"):
        _ispy(ispy_root, tmp_path, "test", n_slices=4)


@pytest.mark.parametrize("n_slices", [0, -2, 2.5, True])
def test_ispy_preprocessing_refuses_a_slice_count_that_is_not_positive(ispy_root, n_slices):
    with pytest.raises(ValueError, match="n_slices must be a positive integer"):
        ispy1.preprocess_ispy1(ispy_root, n_slices=n_slices, progress=False)


def test_ispy_a_data_or_cache_folder_that_is_missing_or_a_file_is_named(ispy_root, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    message = f"cache folder {afile} is a file, not a folder"
    with pytest.raises(NotADirectoryError, match=re.escape(message)):
        ispy1.preprocess_ispy1(ispy_root, cache_dir=afile, progress=False)
    with pytest.raises(NotADirectoryError, match=re.escape(message)):
        load_dataset("ispy1", ispy_root, "train", cache_dir=afile, progress=False)
    assert afile.read_text() == "mine"
    for missing in (tmp_path / "nowhere", afile):
        with pytest.raises(
            FileNotFoundError, match=re.escape(f"I-SPY1 folder {missing} not found")
        ):
            ispy1.preprocess_ispy1(missing, progress=False)


def test_ispy_bad_inputs(ispy_root, tmp_path):
    import nibabel as nib

    subject = next(s for s, pcr in ISPY_PCR.items() if pcr == 0)
    mask_path = ispy_root / "Tumor_segmentation_new" / f"ISPY_{subject}_tumor_mask.nii"
    nib.Nifti1Image(np.zeros((12, 10, 9), dtype=np.uint8), np.eye(4)).to_filename(mask_path)
    outcomes = pd.read_excel(ispy_root / "outcome_new.xlsx")
    outcomes = outcomes[outcomes["SUBJECTID"] != 1010]
    outcomes.to_excel(ispy_root / "outcome_new.xlsx", index=False)
    results = {}
    for split in ("train", "val", "test"):
        data = _ispy(ispy_root, tmp_path, split, n_slices=2, on_error="skip")
        results.update(dict(data.report))
    assert (
        "mask shape (12, 10, 9) differs from the image shape (12, 10, 8)" in results[str(mask_path)]
    )
    missing = [
        p
        for p, problem in results.items()
        if "ISPY_1010 is missing from the outcome table" in problem
    ]
    assert missing and "ISPY_1010" in missing[0]
    with pytest.raises(ValueError, match="missing from the outcome table"):
        _ispy(ispy_root, tmp_path, "train", n_slices=2)
    with pytest.raises(ValueError, match="n_slices must be a positive integer"):
        _ispy(ispy_root, tmp_path, n_slices=0)
    (ispy_root / "outcome_new.xlsx").unlink()
    with pytest.raises(FileNotFoundError, match="outcome table .*outcome_new.xlsx not found"):
        _ispy(ispy_root, tmp_path)


def test_ispy_case_stored_twice_names_both_files(ispy_root, tmp_path):
    image = ispy_root / "Dataset ISPY" / "ISPY_1001" / "DCEMRI_1.nii"
    zipped = image.with_name("DCEMRI_1.nii.gz")
    nib.save(nib.load(image), zipped)
    mask = ispy_root / "Tumor_segmentation_new" / "ISPY_1002_tumor_mask.nii"
    mask_copy = ispy_root / "more masks" / mask.name
    mask_copy.parent.mkdir()
    mask_copy.write_bytes(mask.read_bytes())
    report = {}
    for split in ("train", "val", "test"):
        report.update(_ispy(ispy_root, tmp_path, split, n_slices=2, on_error="skip").report)
    assert report[str(image)] == f"ISPY_1001 has 2 volume files: {image}, {zipped}; keep one"
    first, second = sorted([mask, mask_copy])  # found in path order
    expected = f"ISPY_1002 has 2 tumour mask files: {first}, {second}; keep one"
    assert report[str(first)] == expected


def test_select_slices_by_hand():
    area = np.array([0, 0, 3, 9, 4, 0, 0, 0])
    assert ispy1.select_slices(area, 3).tolist() == [2, 3, 4]
    assert ispy1.select_slices(area, 4).tolist() == [1, 2, 3, 4]  # ties go to the lower index
    assert ispy1.select_slices(area, 1).tolist() == [3]


# ------------------------------------------------------------------------------------------ folder
def test_folder_seeded_stratified_split(folder_root):
    fractions = (0.6, 0.2, 0.2)
    parts = {
        s: load_dataset("folder", folder_root, s, seed=0, split_fractions=fractions)
        for s in ("train", "val", "test")
    }
    ids = [set(p.ids) for p in parts.values()]
    assert set().union(*ids) == set(FOLDER_LABELS) and sum(len(i) for i in ids) == 10
    # 5 per class at 0.6 / 0.2 / 0.2: cuts at 3 and 4, so 3 / 1 / 1 per class.
    assert sorted(parts["train"].labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert sorted(parts["val"].labels.tolist()) == [0, 1]
    assert sorted(parts["test"].labels.tolist()) == [0, 1]
    for data in parts.values():
        assert all(
            FOLDER_LABELS[i] == label for i, label in zip(data.ids, data.labels, strict=True)
        )
    again = load_dataset("folder", folder_root, "test", seed=0, split_fractions=fractions)
    assert again.ids == parts["test"].ids
    assert any(
        load_dataset("folder", folder_root, "test", seed=s, split_fractions=fractions).ids
        != parts["test"].ids
        for s in range(1, 6)
    )
    # Default fractions 0.7 / 0.1 / 0.2 leave no validation image of 5 per class: a clear error.
    with pytest.raises(ValueError, match="holds no usable items .*the split is empty"):
        load_dataset("folder", folder_root, "val")


#: The start of an AppleDouble file (macOS's attributes of a file, ``._<name>``): no image.
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


def test_macos_own_files_are_ignored_like_ds_store(folder_root, isic_root, refuge_root):
    expected = {
        "folder": load_dataset("folder", folder_root, "train").ids,
        "isic2017": load_dataset("isic2017", isic_root, "train").ids,
        "refuge": load_dataset("refuge", refuge_root, "val").ids,
    }
    for root in (folder_root, isic_root, refuge_root):
        for path in [p for p in root.rglob("*") if p.is_file()]:
            (path.parent / f"._{path.name}").write_bytes(APPLE_DOUBLE)
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    assert (folder_root / "images" / "._img00.png").is_file()
    assert (refuge_root / "REFUGE-Validation400-GT" / "._Fovea_locations.xlsx").is_file()
    found = {
        "folder": load_dataset("folder", folder_root, "train").ids,
        "isic2017": load_dataset("isic2017", isic_root, "train").ids,
        "refuge": load_dataset("refuge", refuge_root, "val").ids,
    }
    assert found == expected


def test_folder_with_split_folders_and_class_indices(tmp_path):
    for split, ids in (("train", ["a", "b"]), ("val", ["c"]), ("test", ["d"])):
        base = tmp_path / split
        for k, image_id in enumerate(ids):
            write_rgb(base / "images" / f"{image_id}.jpg", k, shape=(8, 8))
            write_grey(base / "masks" / f"{image_id}.png", np.arange(64).reshape(8, 8) % 3)
        labels = {"a": 0, "b": 2, "c": 1, "d": 0}
        pd.DataFrame({"id": ids, "label": [labels[i] for i in ids]}).to_csv(
            base / "labels.csv", index=False
        )
    options = {"num_seg_classes": 3, "num_classes": 3}
    data = load_dataset("folder", tmp_path, "train", grayscale=True, **options)
    assert data.ids == ["a", "b"] and data.labels.tolist() == [0, 2]
    assert data.num_classes == 3 and data.num_seg_classes == 3
    assert data[0]["image"].shape == (1, 8, 8)
    assert torch.equal(data[0]["mask"], torch.from_numpy(np.arange(64).reshape(8, 8) % 3).long())
    assert load_dataset("folder", tmp_path, "val", **options).num_classes == 3
    with pytest.raises(
        ValueError, match=r"holds the value\(s\) \[2\], expected only \[0, 1, 255\]"
    ):
        load_dataset("folder", tmp_path, "train", num_classes=3)[0]


def write_train_folder(root: Path, images: dict[str, Image.Image]) -> Path:
    """A ``folder`` dataset with only a train split: the given images (file name = key), an
    all-background mask each, label 0 for every id, and a ``classes.txt`` naming two classes
    (stated: with the number inferred, a class without two images would be refused)."""
    (root / "classes.txt").write_text("benign\nmalignant\n")
    base = root / "train"
    (base / "images").mkdir(parents=True)
    for name, image in images.items():
        image.save(base / "images" / name)
        write_grey(base / "masks" / f"{Path(name).stem}.png", np.zeros(image.size[::-1]))
    ids = sorted(Path(name).stem for name in images)
    pd.DataFrame({"id": ids, "label": [0] * len(ids)}).to_csv(base / "labels.csv", index=False)
    return root


def test_eight_bit_rgb_decodes_bit_identically_to_x_over_255(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    root = write_train_folder(tmp_path, {"a.png": Image.fromarray(pixels)})
    # What the loaders computed before every mode had a decoding rule: uint8 -> float / 255.
    reference = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    mask = torch.zeros(10, 14, dtype=torch.int64)
    for size in (None, (5, 7), (20, 28)):
        item = load_dataset("folder", root, "train", size=size)[0]
        expected = resize_item(reference, mask, parse_size(size))[0]
        assert item["image"].dtype == torch.float32 and torch.equal(item["image"], expected)


def test_folder_sixteen_bit_and_float_images_keep_their_values(tmp_path):
    sixteen = np.array([[0, 32768], [65535, 1]], dtype=np.uint16)
    floats = np.array([[0.0, 0.5], [1.0, 0.125]], dtype=np.float32)
    images = {"a.png": Image.fromarray(sixteen), "b.tif": Image.fromarray(floats)}
    root = write_train_folder(tmp_path, images)
    expected = {
        "a": torch.tensor([[0, 32768], [65535, 1]], dtype=torch.float32) / 65535,
        "b": torch.from_numpy(floats),
    }
    colour = load_dataset("folder", root, "train")
    grey = load_dataset("folder", root, "train", grayscale=True)
    for index, image_id in enumerate(colour.ids):
        assert torch.equal(colour[index]["image"], expected[image_id].expand(3, 2, 2))
        assert torch.equal(grey[index]["image"], expected[image_id][None])
    assert colour[0]["image"][0, 0, 1] == pytest.approx(32768 / 65535, rel=1e-7)
    assert colour[0]["image"][0, 1, 0] == 1.0


def test_folder_float_image_outside_the_unit_interval_names_the_file(tmp_path):
    floats = np.array([[0.0, 255.0], [3.5, 1.0]], dtype=np.float32)
    good = Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8))
    root = write_train_folder(tmp_path, {"a.tif": Image.fromarray(floats), "b.png": good})
    message = r"a\.tif: image mode 'F' \(32-bit float\) holds values in \[0, 255\]"
    with pytest.raises(DatasetItemError, match=message):
        load_dataset("folder", root, "train")[0]
    data = load_dataset("folder", root, "train", on_error="skip")
    assert data.ids == ["b"]
    [(path, problem)] = data.report
    assert path == str(root / "train" / "images" / "a.tif")
    assert problem.startswith("image mode 'F' (32-bit float) holds values in [0, 255]")


def test_folder_id_stored_with_two_extensions_raises_naming_both_files(tmp_path):
    pixels = Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8))
    root = write_train_folder(tmp_path, {"a.png": pixels, "b.png": pixels})
    write_rgb(root / "train" / "images" / "a.jpg", 1, shape=(2, 2))
    images = root / "train" / "images"
    message = f"id a has 2 image files: {images / 'a.jpg'}, {images / 'a.png'}; keep one"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_dataset("folder", root, "train")
    assert load_dataset("folder", root, "train", on_error="skip").ids == ["b"]


def test_folder_bad_label_and_empty_images(folder_root):
    pd.DataFrame({"id": ["img00"], "label": ["cat"]}).to_csv(
        folder_root / "labels.csv", index=False
    )
    with pytest.raises(ValueError, match=r"label 'cat' in .*labels\.csv is not a class index"):
        load_dataset("folder", folder_root, "train")
    for path in (folder_root / "images").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=r"no images .* in .*images"):
        load_dataset("folder", folder_root)


# ------------------------------------------------------------------------------------ split helper
def test_stratified_split_by_hand():
    labels = [0] * 10 + [1] * 5
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(15))
    counts = {
        name: np.bincount(np.asarray(labels)[idx], minlength=2).tolist()
        for name, idx in parts.items()
    }
    assert counts == {"train": [6, 3], "val": [2, 1], "test": [2, 1]}
    with pytest.raises(ValueError, match="summing to 1"):
        stratified_split(labels, (0.6, 0.6, 0.2), seed=0)


def test_loaded_image_matches_the_file(isic_root):
    item = load_dataset("isic2017", isic_root, "val")[0]
    stored = np.array(Image.open(isic_root / "ISIC-2017_Validation_Data" / "ISIC_0000006.jpg"))
    assert torch.allclose(item["image"], torch.from_numpy(stored).permute(2, 0, 1).float() / 255)
