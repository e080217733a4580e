import numpy as np
import pytest
import torch

from umlkit.data import DESCRIPTORS, descriptor_baseline, mask_descriptors


def disc(size: int = 64, radius: float = 12.0, centre=(32.0, 32.0)) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (np.hypot(rows - centre[0], cols - centre[1]) < radius).astype(np.int64)


def star(size: int = 64, radius: float = 14.0, lobes: int = 9, depth: float = 0.3) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size] - size / 2
    theta = np.arctan2(rows, cols)
    return (np.hypot(rows, cols) < radius * (1 + depth * np.cos(lobes * theta))).astype(np.int64)


def grey(size: int = 64) -> np.ndarray:
    return np.full((3, size, size), 0.5)


def test_disc_hand_computed():
    values = mask_descriptors(grey(), disc())
    assert set(values) == set(DESCRIPTORS)
    assert values["area"] == pytest.approx(disc().sum() / 64**2)
    # Counting boundary pixels undercounts a digital circle's perimeter (a diagonal step is one
    # pixel, not sqrt 2), so a disc scores about 0.75 rather than 1.
    assert 0.65 < values["compactness"] < 0.85
    assert values["irregularity_harmonics"] < 0.02
    # one colour everywhere: no spread inside, no contrast to the outside
    assert values["colour_spread"] == 0.0
    assert values["colour_contrast"] == 0.0


def test_star_is_irregular_and_an_offset_blob_asymmetric():
    regular, ragged = mask_descriptors(grey(), disc()), mask_descriptors(grey(), star())
    assert ragged["compactness"] > 1.5 * regular["compactness"]
    # depth 0.3 on the 9th harmonic: amplitude 0.3 / 2 in the one-sided spectrum, plus what the
    # pixel grid and the per-bin maximum add
    assert 0.12 < ragged["irregularity_harmonics"] < 0.25
    assert ragged["irregularity_harmonics"] > 10 * regular["irregularity_harmonics"]
    lopsided = np.maximum(disc(), disc(radius=8, centre=(32, 46)))
    assert (
        mask_descriptors(grey(), lopsided)["asymmetry_harmonics"]
        > 3 * regular["asymmetry_harmonics"]
    )


def test_colour_descriptors_hand_computed():
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[:2] = 1
    image = np.zeros((3, 4, 4))
    image[0, 0] = 1.0  # channel 0: the first row of the lesion white, the second black
    values = mask_descriptors(image, mask)
    # inside, channel 0 is half 0 and half 1 (std 0.5), channels 1-2 are constant
    assert values["colour_spread"] == pytest.approx(0.5 / 3)
    # mean inside minus outside per channel: (0.5, 0, 0), whose std is sqrt(1/18)
    assert values["colour_contrast"] == pytest.approx(np.std([0.5, 0.0, 0.0]))


def test_empty_mask_and_bad_shapes():
    values = mask_descriptors(grey(), np.zeros((64, 64), dtype=np.int64))
    assert values["area"] == 0.0
    assert all(np.isnan(values[name]) for name in DESCRIPTORS if name != "area")
    with pytest.raises(ValueError, match="same size"):
        mask_descriptors(grey(), np.zeros((32, 32)))
    with pytest.raises(ValueError, match="same size"):
        mask_descriptors(np.zeros((64, 64)), disc())


def items(radii, labels):
    return [
        {
            "image": torch.full((3, 64, 64), 0.5),
            "mask": torch.from_numpy(disc(radius=r)),
            "label": torch.tensor(y),
            "id": f"img{i}",
        }
        for i, (r, y) in enumerate(zip(radii, labels, strict=True))
    ]


def test_baseline_reads_size_off_the_mask():
    # label = "large lesion": the area descriptor separates the classes perfectly
    train = items([6, 7, 8, 9, 16, 17, 18, 19], [0, 0, 0, 0, 1, 1, 1, 1])
    test = items([6.5, 8.5, 17.5, 18.5, 0], [0, 0, 1, 1, 1])
    assert descriptor_baseline(train, test, columns=["area"]) == {
        "n": 5.0,
        "accuracy": 0.8,  # the empty mask (area 0) of a positive image is called negative
        # 3 positives x 2 negatives = 6 pairs; the two large lesions outrank both negatives,
        # the empty mask neither: AUC 4 / 6
        "auc": pytest.approx(4 / 6),
    }
    # with the shape descriptors the empty mask has NaNs and is left out
    assert descriptor_baseline(train, test, columns=["area", "compactness"])["n"] == 4.0


def test_baseline_bad_input():
    train = items([6, 7, 16, 17], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="both labels"):
        descriptor_baseline(train, train, columns=["area"])
    with pytest.raises(ValueError, match="subset"):
        descriptor_baseline(train, train, columns=["roundness"])
