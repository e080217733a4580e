"""umlkit.metrics.pixel: streaming pixel calibration equals the all-at-once computation."""

import numpy as np
import pytest
import torch

from umlkit.metrics import PixelCalibration, expected_calibration_error, reliability_bins


def random_batch(generator, batch=3, classes=3, size=6, temperature=2.0):
    probs = torch.softmax(
        temperature * torch.randn(batch, classes, size, size, generator=generator), 1
    )
    mask = torch.randint(0, classes, (batch, size, size), generator=generator)
    return probs, mask


def pixels(probs, mask):
    """All pixels as rows: (N, C) probabilities and (N,) labels."""
    classes = probs.shape[1]
    return probs.movedim(1, -1).reshape(-1, classes), mask.reshape(-1)


def test_hand_computed_two_images():
    # image 0: pixel confidences .9 (right) and .6 (wrong); image 1: .8 (right), .8 (right)
    probs = torch.tensor(
        [[[[0.9, 0.4]], [[0.1, 0.6]]], [[[0.8, 0.2]], [[0.2, 0.8]]]]
    )  # (2, 2, 1, 2)
    mask = torch.tensor([[[0, 0]], [[0, 1]]])
    calibration = PixelCalibration(n_bins=5)
    calibration.update(probs, mask)
    result = calibration.compute()
    # pooled, 5 bins: [.8, 1): .9, .8, .8 all right -> |3 - 2.5| = .5; [.6, .8): .6 wrong -> .6
    # ECE = (.5 + .6) / 4 = .275
    assert result["ece_pooled"] == pytest.approx(0.275)
    # image 0: bins {.9 right}, {.6 wrong} -> (.1 + .6) / 2 = .35; image 1: |2 - 1.6| / 2 = .2
    np.testing.assert_allclose(result["ece_per_image"], [0.35, 0.2])
    assert result["ece_per_image_mean"] == pytest.approx(0.275)
    assert result["mce_pooled"] == pytest.approx(0.6)
    assert result["n_pixels"] == 4 and result["n_images"] == 2


def test_streaming_equals_all_pixels_at_once():
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(generator, batch=b) for b in (3, 1, 4)]
    calibration = PixelCalibration(n_bins=10)
    for probs, mask in batches:
        calibration.update(probs, mask)
    result = calibration.compute()
    all_probs = torch.cat([b[0] for b in batches])
    all_mask = torch.cat([b[1] for b in batches])
    expected = expected_calibration_error(*pixels(all_probs, all_mask), n_bins=10)
    assert result["ece_pooled"] == pytest.approx(expected, rel=1e-9)
    per_image = [
        expected_calibration_error(*pixels(all_probs[i : i + 1], all_mask[i : i + 1]), n_bins=10)
        for i in range(len(all_probs))
    ]
    np.testing.assert_allclose(result["ece_per_image"], per_image, rtol=1e-9)
    expected_bins = reliability_bins(*pixels(all_probs, all_mask), n_bins=10)
    np.testing.assert_array_equal(result["bins"]["count"], expected_bins["count"])
    np.testing.assert_allclose(result["bins"]["accuracy"], expected_bins["accuracy"], rtol=1e-9)


def test_excluding_background_keeps_true_or_predicted_foreground():
    generator = torch.Generator().manual_seed(1)
    probs, mask = random_batch(generator, batch=4)
    calibration = PixelCalibration(n_bins=10, include_background=False)
    calibration.update(probs, mask)
    flat_probs, flat_mask = pixels(probs, mask)
    keep = (flat_mask != 0) | (flat_probs.argmax(1) != 0)
    expected = expected_calibration_error(flat_probs[keep], flat_mask[keep], n_bins=10)
    assert calibration.compute()["ece_pooled"] == pytest.approx(expected, rel=1e-9)
    assert calibration.compute()["n_pixels"] == int(keep.sum())
    predicted_only = PixelCalibration(n_bins=10, include_background=False, foreground="predicted")
    predicted_only.update(probs, mask)
    keep = flat_probs.argmax(1) != 0
    assert predicted_only.compute()["ece_pooled"] == pytest.approx(
        expected_calibration_error(flat_probs[keep], flat_mask[keep], n_bins=10), rel=1e-9
    )


def test_images_without_foreground_are_counted_not_averaged():
    probs = torch.zeros(2, 2, 2, 2)
    probs[:, 0] = 0.9
    probs[:, 1] = 0.1
    mask = torch.zeros(2, 2, 2, dtype=torch.long)
    mask[1, 0, 0] = 1  # image 1 has one foreground pixel, image 0 none (and none predicted)
    calibration = PixelCalibration(n_bins=5, include_background=False)
    calibration.update(probs, mask)
    result = calibration.compute()
    assert result["images_without_pixels"] == 1
    assert result["n_images"] == 1
    assert result["ece_pooled"] == pytest.approx(0.9)  # one pixel, confidence .9, wrong


def test_positive_class_mode_matches_calibration_module():
    generator = torch.Generator().manual_seed(2)
    probs, mask = random_batch(generator, classes=2)
    calibration = PixelCalibration(n_bins=8, mode="positive_class")
    calibration.update(probs, mask)
    expected = expected_calibration_error(*pixels(probs, mask), n_bins=8, mode="positive_class")
    assert calibration.compute()["ece_pooled"] == pytest.approx(expected, rel=1e-9)


def test_calibrated_maps_have_small_ece_and_state_does_not_grow():
    generator = torch.Generator().manual_seed(3)
    calibration = PixelCalibration()
    for _ in range(10):
        probs = torch.softmax(3 * torch.randn(4, 2, 32, 32, generator=generator), 1)
        uniform = torch.rand(4, 32, 32, generator=generator)
        mask = (probs[:, 0] < uniform).long()  # labels drawn from the probabilities
        calibration.update(probs, mask)
        assert calibration.count.shape == (15,)
    result = calibration.compute()
    assert result["ece_pooled"] < 0.01
    assert len(result["ece_per_image"]) == 40


def test_numpy_and_half_precision_inputs():
    generator = torch.Generator().manual_seed(4)
    probs, mask = random_batch(generator)
    reference = PixelCalibration()
    reference.update(probs, mask)
    from_numpy = PixelCalibration()
    from_numpy.update(probs.numpy(), mask.numpy())
    assert from_numpy.compute()["ece_pooled"] == reference.compute()["ece_pooled"]
    half = PixelCalibration()
    half.update(probs.half(), mask)
    assert half.compute()["ece_pooled"] == pytest.approx(
        reference.compute()["ece_pooled"], abs=2e-3
    )


def test_ties_go_to_the_lowest_class_like_numpy():
    probs = torch.full((1, 2, 1, 3), 0.5)
    mask = torch.tensor([[[0, 1, 0]]])
    calibration = PixelCalibration(n_bins=4)
    calibration.update(probs, mask)
    # predicted class 0 everywhere: 2 of 3 right at confidence .5 -> |2 - 1.5| / 3
    assert calibration.compute()["ece_pooled"] == pytest.approx(0.5 / 3)


def test_reset():
    generator = torch.Generator().manual_seed(5)
    calibration = PixelCalibration()
    calibration.update(*random_batch(generator))
    calibration.reset()
    with pytest.raises(ValueError, match="no pixels accumulated"):
        calibration.compute()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(6)
    probs, mask = random_batch(generator, batch=4, size=16)
    on_cpu, on_cuda = PixelCalibration(), PixelCalibration(include_background=True)
    on_cpu.update(probs, mask)
    on_cuda.update(probs.cuda(), mask.cuda())
    assert on_cuda.compute()["ece_pooled"] == pytest.approx(on_cpu.compute()["ece_pooled"])


def test_bad_input_raises():
    calibration = PixelCalibration()
    probs = torch.full((1, 2, 2, 2), 0.5)
    mask = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"mask must have shape \(1, 2, 2\)"):
        calibration.update(probs, mask[:, :1])
    with pytest.raises(ValueError, match="must lie in"):
        calibration.update(torch.stack([probs[:, 0] + 0.7, probs[:, 1] - 0.7], dim=1), mask)
    with pytest.raises(ValueError, match="NaN or inf"):
        calibration.update(torch.full((1, 2, 2, 2), float("nan")), mask)
    with pytest.raises(ValueError, match="must sum to 1"):
        calibration.update(torch.full((1, 2, 2, 2), 0.3), mask)
    with pytest.raises(ValueError, match="class indices in"):
        calibration.update(probs, mask + 2)
    with pytest.raises(ValueError, match="integer class indices"):
        calibration.update(probs, mask.float())
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        calibration.update(torch.full((2, 2), 0.5), mask)
    with pytest.raises(ValueError, match="at least 2 classes"):
        calibration.update(torch.ones(1, 1, 2, 2), mask)
    with pytest.raises(ValueError, match="floating point"):
        calibration.update(torch.ones(1, 2, 2, 2, dtype=torch.long), mask)
    with pytest.raises(ValueError, match="needs 2 classes"):
        PixelCalibration(mode="positive_class").update(torch.full((1, 3, 2, 2), 1 / 3), mask)
    with pytest.raises(ValueError, match="foreground must be one of"):
        PixelCalibration(foreground="bounding_box")
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        PixelCalibration(n_bins=0)
