"""umlkit.metrics.segmentation: Dice, IoU, HD95, ASSD, per-class and REFUGE scores."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import directed_hausdorff

from umlkit.metrics import (
    assd,
    dice,
    hd95,
    iou,
    refuge_scores,
    segmentation_scores,
    surface_distances,
)


def square(top: int, left: int, size: int = 3, shape=(7, 7)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


PRED = square(1, 1)  # rows 1-3, columns 1-3
TARGET = square(1, 2)  # rows 1-3, columns 2-4


def test_dice_and_iou_hand_computed():
    # overlap: rows 1-3, columns 2-3 = 6 pixels; |P| = |G| = 9; union 12
    assert dice(PRED, TARGET) == pytest.approx(12 / 18)
    assert iou(PRED, TARGET) == pytest.approx(6 / 12)
    assert dice(PRED, TARGET) == dice(TARGET, PRED)  # symmetric


def test_surface_distances_hand_computed():
    # Each 3x3 square's surface is its 8 border pixels (the centre is not surface).
    # pred -> target: column 1 (3 pixels) is 1 away; (2, 3) is the target's centre, 1 away from its
    # surface; the other 4 pixels lie on the target's surface -> 4 ones, 4 zeros. Symmetrically
    # target -> pred: 4 ones, 4 zeros. Pooled: 8 zeros and 8 ones.
    distances = surface_distances(PRED, TARGET)
    assert sorted(distances.tolist()) == [0.0] * 8 + [1.0] * 8
    assert assd(PRED, TARGET) == pytest.approx(0.5)
    # 95th percentile of 8 zeros and 8 ones (linear interpolation at position 14.25) = 1
    assert hd95(PRED, TARGET) == pytest.approx(1.0)


def test_single_pixels_with_spacing():
    pred, target = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
    pred[2, 0], target[2, 3] = True, True
    # distance 3 pixels along axis 1 in both directions
    assert hd95(pred, target) == pytest.approx(3.0)
    assert assd(pred, target) == pytest.approx(3.0)
    # with 0.5 mm per pixel along axis 1: 1.5 mm; a scalar spacing scales both axes
    assert hd95(pred, target, spacing=(1.0, 0.5)) == pytest.approx(1.5)
    assert assd(pred, target, spacing=2.0) == pytest.approx(6.0)


def test_max_surface_distance_agrees_with_scipy_hausdorff():
    rng = np.random.default_rng(0)
    pred = np.zeros((20, 20), bool)
    target = np.zeros((20, 20), bool)
    pred[3:12, 4:15] = True
    target[5:16, 2:11] = True
    pred[rng.integers(0, 20, 5), rng.integers(0, 20, 5)] = True
    distances = surface_distances(pred, target)

    def surface(mask):
        from scipy import ndimage

        return np.argwhere(mask ^ ndimage.binary_erosion(mask))

    hausdorff = max(
        directed_hausdorff(surface(pred), surface(target))[0],
        directed_hausdorff(surface(target), surface(pred))[0],
    )
    assert distances.max() == pytest.approx(hausdorff)
    assert hd95(pred, target) <= hausdorff


def test_identical_masks():
    assert hd95(PRED, PRED) == 0.0
    assert assd(PRED, PRED) == 0.0
    assert dice(PRED, PRED) == 1.0
    assert iou(PRED, PRED) == 1.0


def test_three_dimensional_masks_with_anisotropic_spacing():
    pred = np.zeros((4, 6, 6), bool)
    target = np.zeros((4, 6, 6), bool)
    pred[1:3, 1:4, 1:4] = True
    target[1:3, 1:4, 2:5] = True  # shifted by one voxel along the last axis (0.7 mm)
    assert hd95(pred, target, spacing=(3.0, 0.7, 0.7)) == pytest.approx(0.7)
    assert dice(pred, target) == pytest.approx(2 * 12 / 36)


def test_empty_masks_documented_values():
    empty = np.zeros((5, 5), bool)
    assert dice(empty, empty) == 1.0
    assert iou(empty, empty) == 1.0
    assert hd95(empty, empty) == 0.0
    assert assd(empty, empty) == 0.0
    assert dice(PRED[:5, :5], empty) == 0.0
    assert iou(empty, PRED[:5, :5]) == 0.0
    assert math.isnan(hd95(PRED[:5, :5], empty))
    assert math.isnan(assd(empty, PRED[:5, :5]))


def test_tensors_and_integer_masks_are_accepted():
    assert dice(torch.from_numpy(PRED.astype(np.int64)), torch.from_numpy(TARGET)) == pytest.approx(
        12 / 18
    )


def test_segmentation_scores_per_class():
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    target = np.array([[0, 1, 0], [2, 2, 2]])
    scores = segmentation_scores(pred, target, num_classes=3, class_names=["bg", "a", "b"])
    # class a: pred {(0,1), (0,2)}, target {(0,1)} -> Dice 2 / 3; class b: 2 * 2 / (2 + 3) = 0.8
    assert scores["dice_a"] == pytest.approx(2 / 3)
    assert scores["dice_b"] == pytest.approx(0.8)
    assert "dice_bg" not in scores
    assert set(scores) == {f"{m}_{c}" for m in ("dice", "iou", "hd95", "assd") for c in "ab"}
    with_background = segmentation_scores(pred, target, 3, include_background=True)
    # background: pred {(0,0), (1,2)}, target {(0,0), (0,2)} -> 2 * 1 / 4
    assert with_background["dice_class0"] == pytest.approx(0.5)


def test_refuge_scores_disc_is_rim_and_cup():
    target = np.zeros((9, 9), int)
    target[2:7, 2:7] = 1  # rim
    target[3:6, 3:6] = 2  # cup
    pred = target.copy()
    pred[3:6, 3:6] = 1  # the cup predicted as rim: the disc is still perfect
    scores = refuge_scores(pred, target)
    assert scores["dice_disc"] == 1.0
    assert scores["hd95_disc"] == 0.0
    assert scores["dice_cup"] == 0.0
    assert math.isnan(scores["hd95_cup"])  # no predicted cup
    # rim: pred 25 pixels, target 16, overlap 16 -> 32 / 41
    assert scores["dice_rim"] == pytest.approx(32 / 41)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="must be binary"):
        iou(np.full((2, 2), 2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        hd95(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="spacing must be a number or 2 numbers"):
        hd95(PRED, TARGET, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be positive"):
        assd(PRED, TARGET, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="at least one dimension"):
        dice(np.array(True), np.array(True))
    with pytest.raises(ValueError, match="only 3 classes"):
        segmentation_scores(np.array([[0, 3]]), np.array([[0, 1]]), num_classes=3)
    with pytest.raises(ValueError, match="class_names has 2 names"):
        segmentation_scores(np.array([[0, 1]]), np.array([[0, 1]]), 3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="only 3 classes"):
        refuge_scores(np.array([[0, 4]]), np.array([[0, 1]]))


@pytest.mark.parametrize("metric", [hd95, assd, surface_distances])
def test_surface_metrics_refuse_masks_that_are_not_2d_or_3d(metric):
    line = np.array([0, 1, 1, 0], dtype=bool)
    with pytest.raises(ValueError, match=r"2-D or 3-D masks, got 1-D masks of shape \(4,\)"):
        metric(line, line)
    batch = PRED[None, None]  # (1, 1, 7, 7): a batch, not a volume
    with pytest.raises(ValueError, match=r"got 4-D masks of shape \(1, 1, 7, 7\)"):
        metric(batch, TARGET[None, None])


def test_per_class_scores_refuse_label_maps_that_are_not_2d_or_3d():
    with pytest.raises(ValueError, match="got 4-D masks"):
        segmentation_scores(PRED[None, None].astype(int), TARGET[None, None].astype(int), 2)
    with pytest.raises(ValueError, match="got 1-D masks"):
        refuge_scores(np.array([0, 1, 2]), np.array([0, 1, 2]))
