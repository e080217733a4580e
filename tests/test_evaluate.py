"""umlkit.evaluate: the per-image table, the summary and the maps, for every kind of model."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from umlkit.data import load_dataset, make_synthetic
from umlkit.evaluate import TABLE_COLUMNS, evaluate, summarise, summary_over_ranks
from umlkit.models import ModelOutput, build_model


class ListDataset(torch.utils.data.Dataset):
    """Hand-made items plus a metadata table, as umlkit's loaders give them."""

    def __init__(self, items, metadata=None):
        self.items, self.metadata = items, metadata

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class ConstantModel(nn.Module):
    """Predicts p = (0.25, 0.75), u = 0.5 and the left half of the image as foreground."""

    def forward(self, x):
        batch, _, height, width = x.shape
        class_alpha = torch.tensor([[1.0, 3.0]]).repeat(batch, 1)  # S = 4: p = (.25, .75)
        seg_logits = torch.zeros(batch, 2, height, width)
        seg_logits[:, 1, :, : width // 2] = 1.0
        return ModelOutput(
            class_alpha=class_alpha,
            class_prob=class_alpha / 4,
            class_uncertainty=torch.full((batch, 1), 0.5),
            seg_logits=seg_logits,
            seg_prob=seg_logits.softmax(1),
            pixel_uncertainty=torch.full((batch, 1, height, width), 0.2),
        )


def hand_dataset():
    mask_left = torch.zeros(4, 4, dtype=torch.long)
    mask_left[:, :2] = 1  # exactly the predicted half: Dice 1
    mask_corner = torch.zeros(4, 4, dtype=torch.long)
    mask_corner[0, 0] = 1  # 1 pixel inside the 8 predicted: Dice 2*1/(8+1)
    items = [
        {"image": torch.rand(3, 4, 4), "mask": m, "label": torch.tensor(y), "id": f"img{i}"}
        for i, (m, y) in enumerate([(mask_left, 1), (mask_corner, 0)])
    ]
    metadata = pd.DataFrame({"id": ["img0", "img1"], "p_true": [0.9, 0.2], "split": "test"})
    return ListDataset(items, metadata)


def test_hand_computed_table_and_summary():
    evaluation = evaluate(ConstantModel(), hand_dataset(), device="cpu", batch_size=1)
    table = evaluation.table
    assert list(table.columns[: len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    assert table["id"].tolist() == ["img0", "img1"]
    assert table["prob"].tolist() == [0.75, 0.75]
    assert table["correct"].tolist() == [1.0, 0.0]
    assert table["class_uncertainty"].tolist() == [0.5, 0.5]
    assert table["dice"].tolist() == pytest.approx([1.0, 2 / 9])
    assert table["hd95"].iloc[0] == 0.0
    assert table["pixel_uncertainty"].tolist() == pytest.approx([0.2, 0.2])
    # metadata factors are merged by id; file/split columns are not.
    assert table["p_true"].tolist() == [0.9, 0.2] and "split" not in table
    summary = evaluation.summary
    assert summary["accuracy"] == 0.5
    assert summary["dice"] == pytest.approx((1 + 2 / 9) / 2)
    # Both images have confidence 0.75 (one bin) and accuracy 0.5: ECE = 0.25.
    assert summary["ece"] == pytest.approx(0.25)
    assert summary["auc"] == 0.5 and summary["n"] == 2
    np.testing.assert_allclose(evaluation.class_prob, [[0.25, 0.75], [0.25, 0.75]])


def test_maps_are_kept_for_the_first_images_only():
    evaluation = evaluate(ConstantModel(), hand_dataset(), device="cpu", keep_maps=1)
    assert evaluation.ids == ["img0"]
    assert evaluation.images.shape == (1, 4, 4, 3)
    assert evaluation.masks.shape == (1, 4, 4) and evaluation.pred_masks.shape == (1, 4, 4)
    assert evaluation.pixel_uncertainty.shape == (1, 4, 4)
    assert not evaluation.error_maps.any()  # image 0 is segmented perfectly
    assert evaluation.reliable_mask is None
    none_kept = evaluate(ConstantModel(), hand_dataset(), device="cpu", keep_maps=0)
    assert none_kept.images is None and none_kept.ids == []


def test_transform_is_applied_before_the_model():
    evaluation = evaluate(
        ConstantModel(), hand_dataset(), device="cpu", transform=lambda x: torch.zeros_like(x)
    )
    assert not evaluation.images.any()


@pytest.fixture(scope="module")
def derm_test_split(tmp_path_factory):
    root = make_synthetic(tmp_path_factory.mktemp("d") / "derm", n=20, size=32, progress=False)
    return load_dataset("isic2017", root, split="test", size=32)


#: The summary's keys: the classification report's, f1, the mean per-image scores, n.
SUMMARY_KEYS = {
    "n", "accuracy", "f1", "f1_macro", "f1_weighted", "auc", "kappa", "sensitivity",
    "specificity", "ece", "brier", "nll", "class_uncertainty", "dice", "iou", "hd95", "assd",
    "pixel_uncertainty", "hd95_undefined",
}  # fmt: skip


@pytest.mark.parametrize("name", ["uml", "uml2024", "unet", "classifier", "multitask"])
def test_every_model_gives_the_expected_columns(derm_test_split, name):
    torch.manual_seed(0)
    model = build_model(name, width=4)
    model.train()
    evaluation = evaluate(model, derm_test_split, device="cpu", batch_size=3)
    table = evaluation.table
    assert model.training, "evaluate must restore the model's mode"
    assert len(table) == len(derm_test_split)
    assert set(TABLE_COLUMNS) | {"p_true", "border_irregularity", "hairs"} <= set(table.columns)
    has_class, has_seg = name != "unet", name != "classifier"
    assert table["prob"].notna().all() == has_class
    assert table["dice"].notna().all() == has_seg
    assert table["class_uncertainty"].notna().all() == (name in ("uml", "uml2024"))
    assert table["pixel_uncertainty"].notna().all() == (name in ("uml", "uml2024"))
    assert np.isnan(evaluation.summary["accuracy"]) != has_class
    assert np.isnan(evaluation.summary["dice"]) != has_seg
    assert (evaluation.pred_masks is None) != has_seg
    # the same keys for every model (the U-Net's summary lacked nll, sensitivity, specificity)
    assert set(evaluation.summary) == SUMMARY_KEYS
    assert all(np.isnan(evaluation.summary[key]) != has_class for key in ("nll", "specificity"))


def test_three_pixel_classes_give_per_class_and_mean_dice():
    class ThreeClasses(nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 3, 4, 4)
            logits[:, 1, :2] = 1.0  # rows 0-1: class 1
            logits[:, 2, 2:] = 1.0  # rows 2-3: class 2
            return ModelOutput(seg_logits=logits, seg_prob=logits.softmax(1))

    mask = torch.zeros(4, 4, dtype=torch.long)
    mask[:2] = 1  # class 1 exact, class 2 absent from the mask
    data = ListDataset([{"image": torch.rand(3, 4, 4), "mask": mask, "label": 0, "id": "a"}])
    table = evaluate(ThreeClasses(), data, device="cpu").table
    assert table["dice_1"].iloc[0] == 1.0 and table["dice_2"].iloc[0] == 0.0
    assert table["dice"].iloc[0] == 0.5
    assert np.isnan(table["hd95_2"].iloc[0])  # predicted but absent: undefined


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate(ConstantModel(), ListDataset([]), device="cpu")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        evaluate(ConstantModel(), hand_dataset(), device="cpu", batch_size=0)
    with pytest.raises(ValueError, match="keep_maps must be"):
        evaluate(ConstantModel(), hand_dataset(), device="cpu", keep_maps=-1)


def test_summaries_of_parts_combine_into_the_whole_summary():
    """summarise() of the concatenated per-image tables of two parts is the whole summary: what
    data-parallel validation relies on (tests/test_train_distributed.py runs it on two ranks)."""
    data = hand_dataset()
    whole = evaluate(ConstantModel(), data, device="cpu", batch_size=1)
    halves = [
        evaluate(ConstantModel(), torch.utils.data.Subset(data, part), device="cpu")
        for part in (range(0, len(data), 2), range(1, len(data), 2))
    ]
    table = pd.concat([h.table for h in halves], ignore_index=True)
    combined = summarise(table, np.concatenate([h.class_prob for h in halves]))
    assert pd.Series(combined).equals(pd.Series(whole.summary))
    # in one process the summary over ranks is evaluate's own summary
    alone = summary_over_ranks(ConstantModel(), data, device="cpu", batch_size=1)
    assert pd.Series(alone).equals(pd.Series(whole.summary))
