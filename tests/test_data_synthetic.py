"""Tests of umlkit.data.synthetic (and the scene models in umlkit.data.scenes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from umlkit.data import bayes_optimal_scores, load_dataset, make_synthetic, synthetic_metadata
from umlkit.data.synthetic import MANIFEST_NAME, METADATA_NAME


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def derm(tmp_path_factory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("derm") / "d", "derm", n=12, size=32, seed=3, progress=False
    )


@pytest.fixture(scope="module")
def fundus(tmp_path_factory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("fundus") / "f", "fundus", n=12, size=48, seed=0, progress=False
    )


# --------------------------------------------------------------------------------------- layouts
def test_derm_writes_the_isic_layout(derm):
    meta = pd.read_csv(derm / METADATA_NAME)
    assert len(meta) == 12
    assert meta["split"].value_counts().to_dict() == {"train": 8, "test": 3, "val": 1}
    for split, word in (("train", "Training"), ("val", "Validation"), ("test", "Test_v2")):
        labels = pd.read_csv(derm / f"ISIC-2017_{word}_Part3_GroundTruth.csv")
        assert list(labels.columns) == ["image_id", "melanoma", "seborrheic_keratosis"]
        part = meta[meta["split"] == split]
        assert labels["image_id"].tolist() == part["id"].tolist()
        assert labels["melanoma"].tolist() == part["label"].astype(float).tolist()
        assert (labels["seborrheic_keratosis"] == 0).all()
        for image_id in part["id"]:
            image = Image.open(derm / f"ISIC-2017_{word}_Data" / f"{image_id}.jpg")
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))
            mask = np.array(
                Image.open(derm / f"ISIC-2017_{word}_Part1_GroundTruth/{image_id}_segmentation.png")
            )
            assert set(np.unique(mask)) == {0, 255}


def test_derm_metadata_keeps_every_factor_and_flag(derm):
    meta = pd.read_csv(derm / METADATA_NAME)
    expected = {
        "id", "split", "label", "p_true", "risk_logit", "border_irregularity", "asymmetry",
        "colour_variegation", "lesion_size", "hairs", "low_contrast", "blurred_border",
        "vignetting", "image", "mask",
    }  # fmt: skip
    assert expected <= set(meta.columns)
    assert meta["p_true"].between(0, 1).all()
    # p_true is the logistic of the recorded logit: the label model is reproducible from the CSV.
    np.testing.assert_allclose(meta["p_true"], 1 / (1 + np.exp(-meta["risk_logit"])), rtol=1e-12)
    assert meta["id"].is_unique


def test_written_metadata_equals_synthetic_metadata(derm):
    written = pd.read_csv(derm / METADATA_NAME)
    table = synthetic_metadata("derm", n=12, seed=3)
    pd.testing.assert_frame_equal(written, table, check_dtype=False)


def test_lesion_area_grows_with_the_size_factor(derm):
    meta = pd.read_csv(derm / METADATA_NAME)
    areas = [(np.array(Image.open(derm / m)) > 0).mean() for m in meta["mask"]]
    assert spearmanr(meta["lesion_size"], areas).statistic > 0.7


def test_fundus_writes_the_refuge_layout(fundus):
    meta = pd.read_csv(fundus / METADATA_NAME)
    train = meta[meta["split"] == "train"]
    for row in train.itertuples():
        folder = "Glaucoma" if row.label else "Non-Glaucoma"
        assert row.image == f"Training400/{folder}/{row.id}.jpg"
        assert row.id[0] == ("g" if row.label else "n")
        assert (fundus / f"Annotation-Training400/Disc_Cup_Masks/{folder}/{row.id}.bmp").is_file()
    for split, gt in (("val", "REFUGE-Validation400-GT"), ("test", "REFUGE-Test-GT")):
        sheet = pd.read_excel(fundus / gt / "Glaucoma_labels.xlsx")
        part = meta[meta["split"] == split]
        assert sheet["ImgName"].tolist() == (part["id"] + ".jpg").tolist()
        assert sheet["Glaucoma Label"].tolist() == part["label"].tolist()
    for row in meta.itertuples():
        assert set(np.unique(np.array(Image.open(fundus / row.mask)))) <= {0, 128, 255}


def test_fundus_masks_have_the_recorded_cup_to_disc_ratio(fundus):
    meta = pd.read_csv(fundus / METADATA_NAME)
    for row in meta.itertuples():
        mask = np.array(Image.open(fundus / row.mask))
        disc_rows = np.flatnonzero((mask < 255).any(axis=1))
        cup_rows = np.flatnonzero((mask == 0).any(axis=1))
        measured = len(cup_rows) / len(disc_rows)
        # Pixel rounding at 48 px: the disc spans ~10-14 rows, so allow 1.5 rows of error.
        assert abs(measured - row.vcdr) < 1.5 / len(disc_rows) + 0.02, row.id


def test_loaders_read_the_synthetic_datasets(derm, fundus):
    meta = pd.read_csv(fundus / METADATA_NAME)
    for split in ("train", "val", "test"):
        data = load_dataset("fundus", fundus, split, size=32)
        part = meta[meta["split"] == split].set_index("id").loc[data.ids]
        assert data.labels.tolist() == part["label"].tolist()
        assert data.metadata["vcdr"].tolist() == part["vcdr"].tolist()
    data = load_dataset("derm", derm, "train")
    assert data.kind == "isic2017" and len(data) == 8
    assert data[0]["image"].shape == (3, 32, 32)


def test_ood_set_reads_as_an_isic_test_split(tmp_path):
    root = make_synthetic(tmp_path / "ood", "ood", n=6, size=32, progress=False)
    data = load_dataset("ood", root, "test")
    assert len(data) == 6
    assert data.metadata["p_true"].isna().all()
    assert not (root / "ISIC-2017_Training_Data").exists()
    with pytest.raises(ValueError, match="p_true must lie in"):
        bayes_optimal_scores(root)


# ----------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("kind", ["derm", "fundus"])
def test_same_seed_gives_byte_identical_files(tmp_path, kind):
    first = make_synthetic(tmp_path / "a", kind, n=6, size=32, seed=5, progress=False)
    second = make_synthetic(tmp_path / "b", kind, n=6, size=32, seed=5, progress=False)
    assert _files(first) == _files(second)
    other = _files(make_synthetic(tmp_path / "c", kind, n=6, size=32, seed=6, progress=False))
    common = [name for name in _files(first) if name.endswith(".jpg") and name in other]
    assert common
    assert all(other[name] != _files(first)[name] for name in common)


def test_worker_processes_write_the_same_files(tmp_path):
    # 260 images: two chunks of work (250 + 10), so both processes draw some
    one = make_synthetic(tmp_path / "one", "fundus", n=260, size=16, seed=2, progress=False)
    two = make_synthetic(
        tmp_path / "two", "fundus", n=260, size=16, seed=2, progress=False, workers=2
    )
    assert _files(one) == _files(two)


def test_an_image_does_not_depend_on_n(tmp_path):
    small = make_synthetic(tmp_path / "s", n=3, size=32, splits=(1, 0, 0), progress=False)
    large = make_synthetic(tmp_path / "l", n=7, size=32, splits=(1, 0, 0), progress=False)
    for k in range(3):
        name = f"ISIC-2017_Training_Data/ISIC_{k:07d}.jpg"
        assert (small / name).read_bytes() == (large / name).read_bytes()


# ------------------------------------------------------------------- idempotence and safety
def test_second_call_does_nothing(tmp_path):
    root = make_synthetic(tmp_path / "d", n=4, size=32, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert make_synthetic(root, n=4, size=32, progress=False) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps


def test_partial_folder_raises_and_overwrite_regenerates(tmp_path):
    root = make_synthetic(tmp_path / "d", n=4, size=32, progress=False)
    (root / MANIFEST_NAME).unlink()
    with pytest.raises(FileExistsError, match=r"unfinished umlkit synthetic derm dataset"):
        make_synthetic(root, n=4, size=32, progress=False)
    make_synthetic(root, n=4, size=32, progress=False, overwrite=True)
    assert json.loads((root / MANIFEST_NAME).read_text())["n"] == 4


@pytest.mark.parametrize("damage", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_damaged_record_is_named_as_damaged_not_missing(tmp_path, damage):
    root = make_synthetic(tmp_path / "d", n=4, size=32, progress=False)
    (root / MANIFEST_NAME).write_bytes(damage)
    message = f"its {MANIFEST_NAME} is damaged: not the JSON record umlkit writes"
    with pytest.raises(FileExistsError, match=re.escape(message)):
        make_synthetic(root, n=4, size=32, progress=False)


def test_missing_file_of_a_complete_dataset_raises(tmp_path):
    root = make_synthetic(tmp_path / "d", n=4, size=32, progress=False)
    (root / "ISIC-2017_Training_Data/ISIC_0000000.jpg").unlink()
    with pytest.raises(FileExistsError, match="1 of its files are missing"):
        make_synthetic(root, n=4, size=32, progress=False)


def test_other_parameters_raise_unless_overwrite(tmp_path):
    root = make_synthetic(tmp_path / "d", n=4, size=32, seed=0, progress=False)
    with pytest.raises(FileExistsError, match=r"another umlkit synthetic dataset.*seed=0"):
        make_synthetic(root, n=4, size=32, seed=1, progress=False)
    make_synthetic(root, n=4, size=32, seed=1, progress=False, overwrite=True)
    assert json.loads((root / MANIFEST_NAME).read_text())["seed"] == 1


def test_dataset_of_another_generator_version_raises(tmp_path):
    root = make_synthetic(tmp_path / "d", n=4, size=32, progress=False)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    (root / MANIFEST_NAME).write_text(json.dumps({**manifest, "version": 0}))
    with pytest.raises(FileExistsError, match=r"another version of umlkit's generator .*0"):
        make_synthetic(root, n=4, size=32, progress=False)


def test_foreign_folder_is_never_touched(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"mine.*notes\.txt"):
            make_synthetic(root, n=4, size=32, progress=False, overwrite=overwrite)
    assert (root / "notes.txt").read_text() == "keep me"
    done = make_synthetic(tmp_path / "d", n=4, size=32, progress=False)
    (done / "extra.csv").write_text("x")
    with pytest.raises(FileExistsError, match="extra.csv"):
        make_synthetic(done, n=4, size=32, seed=9, progress=False, overwrite=True)
    assert (done / "extra.csv").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "xray"}, "not a synthetic kind"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"size": 8}, "size must be an integer >= 16"),
        ({"seed": -1}, "seed must be"),
        ({"splits": (0.5, 0.5, 0.5)}, "summing to 1"),
        ({"workers": 0}, "workers must be a positive integer"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic(tmp_path / "d", **{"n": 4, "size": 32, "progress": False, **kwargs})
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------------------- label model
def test_bayes_optimal_scores_by_hand():
    table = pd.DataFrame({"p_true": [0.9, 0.2, 0.6, 0.5], "label": [1, 0, 0, 1]})
    scores = bayes_optimal_scores(table)
    # max(p, 1 - p) = 0.9, 0.8, 0.6, 0.5; p > 0.5 predicts 1, 0, 1, 0 -> 2 of 4 right.
    assert scores["expected_accuracy"] == pytest.approx(0.7)
    assert scores["accuracy"] == pytest.approx(0.5)
    # (0.1^2 + 0.2^2 + 0.6^2 + 0.5^2) / 4
    assert scores["brier"] == pytest.approx(0.165)
    # Positive scores 0.9, 0.5 vs negative 0.2, 0.6: pairs won 1 + 1 + 1 + 0 = 3 of 4.
    assert scores["auc"] == pytest.approx(0.75)
    assert scores["prevalence"] == 0.5 and scores["n"] == 4


def test_bayes_optimal_scores_bad_input(tmp_path):
    with pytest.raises(ValueError, match="p_true must lie in"):
        bayes_optimal_scores(pd.DataFrame({"p_true": [1.2], "label": [1]}))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        bayes_optimal_scores(pd.DataFrame({"p_true": [0.2], "label": [2]}))
    with pytest.raises(ValueError, match="lacks the column"):
        bayes_optimal_scores(pd.DataFrame({"p_true": [0.2]}))
    with pytest.raises(ValueError, match="split='training'"):
        bayes_optimal_scores(pd.DataFrame({"p_true": [0.2], "label": [0]}), split="training")
    with pytest.raises(FileNotFoundError, match="no synthetic metadata"):
        bayes_optimal_scores(tmp_path)


def test_bayes_optimal_scores_from_a_root_and_a_split(derm):
    meta = pd.read_csv(derm / METADATA_NAME)
    test = meta[meta["split"] == "test"]
    scores = bayes_optimal_scores(derm, split="test")
    assert scores["n"] == len(test)
    assert scores["brier"] == pytest.approx(((test["p_true"] - test["label"]) ** 2).mean())


@pytest.mark.parametrize(
    ("kind", "accuracy", "prevalence"),
    [("derm", (0.82, 0.88), (0.34, 0.44)), ("fundus", (0.86, 0.91), (0.37, 0.47))],
)
def test_label_model_matches_its_documentation(kind, accuracy, prevalence):
    # 2000 draws: the standard error of a proportion is about 0.011; the bands are >= 2.5 SE wide.
    scores = bayes_optimal_scores(synthetic_metadata(kind, n=2000, seed=0))
    assert accuracy[0] < scores["expected_accuracy"] < accuracy[1]
    assert prevalence[0] < scores["prevalence"] < prevalence[1]
    assert (
        scores["expected_accuracy"] < 0.95
    )  # real ambiguity: labels are not a function of the image


# ---------------------------------------------------------------------- derm colour variegation
def test_variegation_patch_covers_its_fixed_share_of_the_lesion():
    from umlkit.data.scenes import VARIEGATION_PATCH_AREA, _patch

    # A ramp field over 100 rows: the patch is the top 15 rows (value >= 1/2), soft over 0.25.
    field = np.repeat(np.linspace(-1.0, 1.0, 100, dtype=np.float32)[:, None], 10, axis=1)
    inside = np.ones_like(field, dtype=bool)
    patch = _patch(field, inside)
    assert (patch >= 0.5).mean() == pytest.approx(VARIEGATION_PATCH_AREA, abs=0.01)
    assert patch.min() == 0.0 and patch.max() == 1.0
    # The same share of a smaller region, whatever the field does elsewhere.
    inside[:50] = False
    patch = _patch(field, inside)
    assert (patch[inside] >= 0.5).mean() == pytest.approx(VARIEGATION_PATCH_AREA, abs=0.02)
    # No region: no patch (and no quantile of an empty array).
    assert not _patch(field, np.zeros_like(inside)).any()


def test_visible_variegation_hardly_varies_at_a_given_factor():
    # The colour change that variegation makes inside a lesion at a given factor value should
    # hardly vary between lesions. Coefficient of variation over these 40 lesions at 0.4:
    # generator version 3 (patches where a random field passed a fixed level) 0.21, version 4
    # (patches of fixed area) 0.12.
    import copy

    from umlkit.data.scenes import derm_factors, draw_derm
    from umlkit.data.synthetic import _image_rngs

    changes = []
    for index in range(40):
        factor_rng, draw_rng = _image_rngs("derm", 5, index)
        factors = derm_factors(factor_rng)
        clean = {**factors, "hairs": 0, "low_contrast": 0, "blurred_border": 0, "vignetting": 0}
        with_patches, mask = draw_derm(
            {**clean, "colour_variegation": 0.4}, 64, copy.deepcopy(draw_rng)
        )
        without, _ = draw_derm({**clean, "colour_variegation": 0.0}, 64, copy.deepcopy(draw_rng))
        change = np.abs(with_patches.astype(float) - without).sum(axis=-1)[mask].mean() / 255
        changes.append(change)
    changes = np.array(changes)
    assert changes.min() > 0.05  # visible in every lesion
    assert changes.std() / changes.mean() < 0.16
