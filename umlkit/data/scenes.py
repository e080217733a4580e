"""The image models behind the synthetic datasets: what is drawn, and how the label depends on it.

Each family has two steps, so the label model can be studied without drawing a single pixel:

``*_factors(rng)``
    draws the latent factors, the nuisance flags, the true probability ``p_true`` of the positive
    class and the label ``y ~ Bernoulli(p_true)``.
``draw_*(factors, size, rng)``
    renders an RGB image (uint8, H x W x 3) and its mask from those factors.

Everything is drawn in continuous coordinates ``x, y in [-1, 1]`` (pixel centres), so ``size``
only changes the resolution, not the scene. Lengths are in these units too: one pixel is
``2 / size``.

**derm** (ISIC-like). Four factors, each uniform on [0, 1], set the lesion's look and its risk:
border irregularity (high-frequency harmonics of the border), asymmetry (low-frequency lobes of
the border, harmonics 3-5, and an off-centre pigment blob), colour variegation (patches of black,
blue-grey, red and tan) and size. The label is melanoma with probability

    p_true = sigmoid(b0 + sum_j w_j (f_j - 1/2)),   b0 = -1, w = (6, 5, 6, 4),

so the Bayes-optimal classifier given the factors is ``p_true > 1/2``, with an expected accuracy
of about 0.85 and a prevalence of about 0.39. Nuisances (hairs, low contrast, blurred border,
vignetting) are independent of the label: they hide the factors but never change ``p_true``.

**fundus** (REFUGE-like). The vertical cup-to-disc ratio ``vcdr ~ U(0.25, 0.85)`` drives the
glaucoma label through

    p_true = sigmoid((vcdr - 0.6) / 0.05),

i.e. the clinician's label is ``1[vcdr + noise > 0.6]`` with logistic noise of scale 0.05 standing
for what the photograph does not show (visual field, pressure, history). Expected Bayes accuracy
about 0.88, prevalence about 0.42. The disc is drawn larger than in real REFUGE photographs
(radius 20-28 % of the half-width) so that the cup is still a few pixels wide at 64 x 64.

**ood**: images that are not skin (colour gratings, cell-like blobs, blocky colour noise, and
fundus photographs as a nearer shift), each with one object as its mask; their ``p_true`` is
undefined (NaN).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.special import expit

#: Weights of the derm risk model, in the order of :data:`DERM_FACTORS`.
DERM_FACTORS = ("border_irregularity", "asymmetry", "colour_variegation", "lesion_size")
DERM_RISK_WEIGHTS = (6.0, 5.0, 6.0, 4.0)
DERM_RISK_INTERCEPT = -1.0
DERM_NUISANCES = {"hairs": 0.3, "low_contrast": 0.2, "blurred_border": 0.2, "vignetting": 0.25}

#: Glaucoma model: threshold and logistic noise scale on the vertical cup-to-disc ratio.
FUNDUS_VCDR_RANGE = (0.25, 0.85)
FUNDUS_VCDR_THRESHOLD = 0.6
FUNDUS_LABEL_NOISE = 0.05
FUNDUS_NUISANCES = {"blurred": 0.2, "dark": 0.2, "uneven_illumination": 0.25}

OOD_FAMILIES = ("grating", "cells", "blocks", "fundus")

_SKIN_LIGHT = np.array([0.94, 0.80, 0.70], dtype=np.float32)
_SKIN_DARK = np.array([0.78, 0.57, 0.45], dtype=np.float32)
_BROWN_LIGHT = np.array([0.60, 0.40, 0.28], dtype=np.float32)
_BROWN_DARK = np.array([0.36, 0.21, 0.14], dtype=np.float32)
#: The colours that variegation mixes into the lesion: black, blue-grey, red, tan.
_VARIEGATION_COLOURS = np.array(
    [[0.10, 0.07, 0.07], [0.40, 0.44, 0.54], [0.68, 0.28, 0.26], [0.78, 0.60, 0.44]],
    dtype=np.float32,
)
#: Fraction of the lesion each of the four variegation patches covers, and the patches' opacity at
#: ``colour_variegation = 1`` (the opacity grows linearly from 0).
VARIEGATION_PATCH_AREA = 0.15
VARIEGATION_MAX_OPACITY = 0.9
_HAIR = np.array([0.13, 0.10, 0.08], dtype=np.float32)
_RETINA_LIGHT = np.array([0.82, 0.40, 0.17], dtype=np.float32)
_RETINA_DARK = np.array([0.62, 0.26, 0.10], dtype=np.float32)
_DISC_RIM = np.array([0.94, 0.64, 0.38], dtype=np.float32)
_CUP = np.array([1.00, 0.92, 0.74], dtype=np.float32)
_VESSEL = np.array([0.46, 0.10, 0.06], dtype=np.float32)


def sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    """The logistic function 1 / (1 + exp(-z))."""
    return expit(z)


# ------------------------------------------------------------------------------------------ helpers
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x to the right, y downwards) in [-1, 1]; cached, read-only."""
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    xx.flags.writeable = False
    yy.flags.writeable = False
    return xx, yy


def _smooth_field(
    rng: np.random.Generator, size: int, scale: float, n_waves: int = 8
) -> np.ndarray:
    """A smooth random field of zero mean and unit variance whose blobs are about ``scale`` wide.

    A sum of ``n_waves`` plane waves cos(k . x + phase) with random directions and wavelengths
    around ``2 * scale``; resolution-independent, unlike filtered pixel noise.
    """
    xx, yy = _grid(size)
    angle = rng.uniform(0.0, 2.0 * np.pi, n_waves).astype(np.float32)
    wavenumber = (np.pi / scale) * rng.uniform(0.6, 1.4, n_waves).astype(np.float32)
    phase = rng.uniform(0.0, 2.0 * np.pi, n_waves).astype(np.float32)
    kx = (wavenumber * np.cos(angle))[:, None, None]
    ky = (wavenumber * np.sin(angle))[:, None, None]
    waves = np.cos(kx * xx + ky * yy + phase[:, None, None])
    return waves.sum(axis=0) * np.float32(np.sqrt(2.0 / n_waves))


def _harmonics(
    rng: np.random.Generator, theta: np.ndarray, orders: np.ndarray, decay: float
) -> np.ndarray:
    """A random periodic function of the angle with unit standard deviation over the circle.

    sum_k a_k cos(k theta + phi_k) with a_k ~ k^-decay * U(0.5, 1.5), rescaled so that
    sum_k a_k^2 / 2 = 1 (the variance of the sum over a uniform angle).
    """
    amplitude = orders.astype(np.float64) ** -decay * rng.uniform(0.5, 1.5, len(orders))
    amplitude /= np.sqrt((amplitude**2).sum() / 2.0)
    phase = rng.uniform(0.0, 2.0 * np.pi, len(orders))
    orders = orders.astype(np.float32)[:, None, None]
    terms = np.cos(orders * theta[None] + phase[:, None, None].astype(np.float32))
    return np.tensordot(amplitude.astype(np.float32), terms, axes=1)


def _draw_curves(points: list[np.ndarray], size: int, width_px: float) -> np.ndarray:
    """Rasterise thin curves (lists of (x, y) points in [-1, 1]) into an opacity map in [0, 1].

    The visited pixels are marked once and blurred by a Gaussian of ``width_px / 2.355`` pixels
    (so ``width_px`` is the full width at half maximum); the result is rescaled so that the
    centre of a straight line has opacity 1.
    """
    canvas = np.zeros((size, size), dtype=np.float32)
    for curve in points:
        col = np.floor((curve[:, 0] + 1.0) * 0.5 * size).astype(np.int64)
        row = np.floor((curve[:, 1] + 1.0) * 0.5 * size).astype(np.int64)
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        canvas[row[inside], col[inside]] = 1.0
    sigma = max(width_px / 2.355, 0.35)
    blurred = ndimage.gaussian_filter(canvas, sigma, mode="constant")
    # Peak of a blurred one-pixel-wide line: the 1-D Gaussian integrated over one pixel.
    peak = ndimage.gaussian_filter1d(np.eye(1, 33, 16, dtype=np.float32)[0], sigma).max()
    return np.clip(blurred / peak, 0.0, 1.0)


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``colour`` ((3,) or (3, H, W)) over ``image`` (3, H, W) with opacity ``alpha``."""
    if colour.ndim == 1:
        colour = colour[:, None, None]
    return image * (1.0 - alpha) + colour * alpha


def _patch(field: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """A soft patch covering :data:`VARIEGATION_PATCH_AREA` of the region ``inside``.

    The patch is where the smooth ``field`` exceeds its own quantile over ``inside``, with a soft
    edge of ``0.25`` field units, so its area is the same whatever the field's blobs happen to
    do (why this matters: :func:`draw_derm`).
    """
    if not inside.any():
        return np.zeros_like(field)
    level = np.quantile(field[inside], 1.0 - VARIEGATION_PATCH_AREA)
    return np.clip((field - level) / 0.25 + 0.5, 0.0, 1.0).astype(np.float32)


def _to_uint8(image: np.ndarray, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """Add sensor noise, clip to [0, 1] and convert (3, H, W) float to (H, W, 3) uint8."""
    image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def _flags(rng: np.random.Generator, rates: dict[str, float]) -> dict[str, int]:
    return {name: int(rng.uniform() < rate) for name, rate in rates.items()}


# --------------------------------------------------------------------------------------------- derm
def derm_factors(rng: np.random.Generator) -> dict[str, float | int]:
    """Draw one lesion's risk factors, nuisance flags, ``p_true`` and melanoma label.

    Returns:
        ``border_irregularity``, ``asymmetry``, ``colour_variegation``, ``lesion_size`` (each
        U(0, 1)); the flags of :data:`DERM_NUISANCES`; ``risk_logit`` = b0 + sum_j w_j (f_j - 1/2);
        ``p_true`` = sigmoid(risk_logit); ``label`` ~ Bernoulli(p_true).
    """
    factors: dict[str, float | int] = {name: float(rng.uniform()) for name in DERM_FACTORS}
    factors.update(_flags(rng, DERM_NUISANCES))
    logit = DERM_RISK_INTERCEPT + sum(
        w * (factors[name] - 0.5) for name, w in zip(DERM_FACTORS, DERM_RISK_WEIGHTS, strict=True)
    )
    factors["risk_logit"] = float(logit)
    factors["p_true"] = float(sigmoid(logit))
    factors["label"] = int(rng.uniform() < factors["p_true"])
    return factors


def _hair_opacity(rng: np.random.Generator, size: int) -> np.ndarray:
    """The opacity (H, W) of 3-9 hairs, each a quadratic Bezier curve across the image."""
    curves = []
    for _ in range(rng.integers(3, 10)):
        start = rng.uniform(-1.2, 1.2, 2)
        direction = rng.uniform(0.0, 2.0 * np.pi)
        length = rng.uniform(0.8, 2.0)
        end = start + length * np.array([np.cos(direction), np.sin(direction)])
        bend = (start + end) / 2 + rng.normal(0.0, 0.25, 2)
        t = np.linspace(0.0, 1.0, 4 * size)[:, None]
        curves.append((1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end)
    return 0.9 * _draw_curves(curves, size, width_px=max(1.2 * size / 128, 0.8))


def draw_derm(factors: dict, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render a dermoscopy-like image and its binary lesion mask from :func:`derm_factors`' output.

    The border is r(theta) = R (1 + e cos 2(theta - theta_e) + s_a A(theta) + s_b B(theta)), where
    A holds the harmonics 3-5 with random phases (asymmetry, s_a = 0.02 + 0.14 * asymmetry: a
    lopsided, lobed outline with no mirror axis), B the harmonics 6-14 (irregularity,
    s_b = 0.015 + 0.11 * border_irregularity), each of unit standard deviation, e a symmetric
    elongation that carries no risk, and R = 0.25 + 0.3 * lesion_size.
    Asymmetry also moves the lesion's dark pigment blob off-centre by 0.5 * asymmetry * R.
    Colour variegation lays one patch of each of the four variegation colours over the lesion,
    each covering :data:`VARIEGATION_PATCH_AREA` of it (where a smooth random field is highest),
    with opacity ``VARIEGATION_MAX_OPACITY * colour_variegation``.

    Why no harmonic 1 in the asymmetry: to first order R (1 + e cos(theta - phi)) is a circle
    moved by e R, so harmonic 1 would only shift the lesion and the factor would not show in its
    shape. Why patches of a fixed area: a patch drawn wherever a random field passes a fixed level
    would cover more or less of the lesion by chance, so how variegated a lesion looks would
    depend on the field as much as on the factor; with a fixed area only the opacity, and so the
    factor, sets it.

    Returns:
        ``(image, mask)``: uint8 (H, W, 3) and bool (H, W) with True inside the lesion.
    """
    xx, yy = _grid(size)
    pixel = 2.0 / size
    skin = _SKIN_LIGHT + rng.uniform() * (_SKIN_DARK - _SKIN_LIGHT)
    texture = 0.035 * _smooth_field(rng, size, 0.35) + 0.015 * _smooth_field(rng, size, 0.06)
    image = skin[:, None, None] * (1.0 + texture)[None]

    centre_x, centre_y = rng.uniform(-0.12, 0.12, 2)
    dx, dy = xx - np.float32(centre_x), yy - np.float32(centre_y)
    rho = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    radius_mean = 0.25 + 0.3 * factors["lesion_size"]
    elongation = rng.uniform(0.0, 0.12) * np.cos(2.0 * (theta - rng.uniform(0.0, np.pi)))
    asymmetry = (0.02 + 0.14 * factors["asymmetry"]) * _harmonics(
        rng, theta, np.array([3, 4, 5]), decay=0.0
    )
    irregularity = (0.015 + 0.11 * factors["border_irregularity"]) * _harmonics(
        rng, theta, np.arange(6, 15), decay=0.5
    )
    radius = radius_mean * np.maximum(1.0 + elongation + asymmetry + irregularity, 0.3)
    mask = rho < radius

    # Colour: a brown base with a darker pigment blob, central in a symmetric lesion and pushed
    # off-centre by asymmetry (the ABCD rule's asymmetry covers colours as well as the contour),
    # with one variegation patch per colour laid over it.
    base = _BROWN_LIGHT + rng.uniform() * (_BROWN_DARK - _BROWN_LIGHT)
    shift = 0.5 * factors["asymmetry"] * radius_mean
    shift_angle = rng.uniform(0.0, 2.0 * np.pi)
    pigment_distance2 = (dx - shift * np.cos(shift_angle)) ** 2 + (
        dy - shift * np.sin(shift_angle)
    ) ** 2
    pigment = 0.3 * np.exp(-pigment_distance2 / (2.0 * (0.45 * radius_mean) ** 2))
    colour = base[:, None, None] * (1.0 - pigment)[None]
    opacity_of_patches = VARIEGATION_MAX_OPACITY * factors["colour_variegation"]
    for patch_colour in _VARIEGATION_COLOURS:
        patch = _patch(_smooth_field(rng, size, 0.45 * radius_mean), mask)
        colour = _blend(colour, patch_colour, opacity_of_patches * patch[None])

    if factors["blurred_border"]:
        softness = radius_mean * rng.uniform(0.08, 0.16)
    else:
        softness = 0.35 * pixel
    alpha = sigmoid((radius - rho) / softness).astype(np.float32)
    opacity = rng.uniform(0.3, 0.45) if factors["low_contrast"] else rng.uniform(0.88, 0.97)
    image = _blend(image, colour, opacity * alpha[None])

    if factors["hairs"]:
        hair_opacity = _hair_opacity(rng, size)  # drawn first, so a seed always gives one image
        image = _blend(image, _HAIR * rng.uniform(0.8, 1.2), hair_opacity[None])

    if factors["vignetting"]:
        falloff = np.clip(np.hypot(xx, yy) / np.sqrt(2.0), 0.0, 1.0) ** 2.5
        image = image * (1.0 - rng.uniform(0.35, 0.6) * falloff)[None]
    return _to_uint8(image, rng), mask


# ------------------------------------------------------------------------------------------- fundus
def fundus_factors(rng: np.random.Generator) -> dict[str, float | int]:
    """Draw one eye's disc and cup geometry, nuisance flags, ``p_true`` and glaucoma label.

    Returns:
        ``vcdr`` ~ U(0.25, 0.85) (vertical cup-to-disc ratio), ``hcdr`` = vcdr * U(0.8, 1.0)
        (glaucomatous cups grow vertically first), ``disc_radius`` ~ U(0.2, 0.28),
        ``eye`` (+1 disc on the right, -1 on the left), the flags of :data:`FUNDUS_NUISANCES`,
        ``p_true`` = sigmoid((vcdr - 0.6) / 0.05) and ``label`` ~ Bernoulli(p_true).
    """
    vcdr = float(rng.uniform(*FUNDUS_VCDR_RANGE))
    factors: dict[str, float | int] = {
        "vcdr": vcdr,
        "hcdr": vcdr * float(rng.uniform(0.8, 1.0)),
        "disc_radius": float(rng.uniform(0.2, 0.28)),
        "eye": int(rng.choice([-1, 1])),
    }
    factors.update(_flags(rng, FUNDUS_NUISANCES))
    factors["p_true"] = float(sigmoid((vcdr - FUNDUS_VCDR_THRESHOLD) / FUNDUS_LABEL_NOISE))
    factors["label"] = int(rng.uniform() < factors["p_true"])
    return factors


def _vessel_path(
    rng: np.random.Generator, start: np.ndarray, toward: np.ndarray, size: int, major: bool
) -> np.ndarray:
    """Points of one vessel leaving the disc: a curve whose heading turns at a constant rate.

    Major vessels leave upwards or downwards and bend towards the macula (the arcades); minor
    ones leave in any direction and bend either way.
    """
    if major:
        heading = rng.choice([-1.0, 1.0]) * np.pi / 2 + rng.uniform(-0.5, 0.5)
        direction = np.array([np.cos(heading), np.sin(heading)])
        turn_sign = np.sign(direction[0] * toward[1] - direction[1] * toward[0]) or 1.0
        curvature = turn_sign * rng.uniform(0.8, 1.6)
        length = rng.uniform(1.1, 1.8)
    else:
        heading = rng.uniform(0.0, 2.0 * np.pi)
        curvature = rng.uniform(-1.5, 1.5)
        length = rng.uniform(0.4, 1.0)
    step = 1.0 / size
    arc = np.arange(0.0, length, step)
    angle = heading + curvature * arc
    steps = step * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return start + np.cumsum(steps, axis=0)


def draw_fundus(
    factors: dict, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Render a fundus-photograph-like image and its disc/cup mask from :func:`fundus_factors`.

    Disc: an ellipse of horizontal semi-axis R_h = R (1 - e/2) and vertical R_v = R (1 + e),
    e ~ U(0, 0.1); cup: an ellipse of semi-axes hcdr * R_h and vcdr * R_v, shifted towards the
    macula by at most the room the rim leaves, so it always lies inside the disc.

    Returns:
        ``(image, mask)``: uint8 (H, W, 3) and uint8 (H, W) classes 0 background, 1 rim, 2 cup.
    """
    xx, yy = _grid(size)
    pixel = 2.0 / size
    eye = factors["eye"]
    retina = _RETINA_LIGHT + rng.uniform() * (_RETINA_DARK - _RETINA_LIGHT)
    radial = np.hypot(xx, yy)
    illumination = 1.0 - 0.35 * np.clip(radial / 0.96, 0.0, 1.0) ** 2
    texture = 0.05 * _smooth_field(rng, size, 0.2) + 0.02 * _smooth_field(rng, size, 0.05)
    image = retina[:, None, None] * (illumination * (1.0 + texture))[None]

    disc_x = eye * 0.28 + rng.uniform(-0.05, 0.05)
    disc_y = rng.uniform(-0.08, 0.08)
    macula = np.array([-eye * 0.34, rng.uniform(-0.04, 0.04)])
    macula_distance2 = (xx - macula[0]) ** 2 + (yy - macula[1]) ** 2
    image = image * (1.0 - 0.28 * np.exp(-macula_distance2 / (2 * 0.13**2)))[None]

    elongation = rng.uniform(0.0, 0.1)
    radius_h = factors["disc_radius"] * (1.0 - elongation / 2)
    radius_v = factors["disc_radius"] * (1.0 + elongation)
    disc_level = np.hypot((xx - disc_x) / radius_h, (yy - disc_y) / radius_v)
    cup_h, cup_v = factors["hcdr"] * radius_h, factors["vcdr"] * radius_v
    cup_x = disc_x - eye * rng.uniform(0.0, 0.5) * (radius_h - cup_h)
    cup_level = np.hypot((xx - cup_x) / cup_h, (yy - disc_y) / cup_v)
    disc, cup = disc_level < 1.0, cup_level < 1.0
    mask = np.where(disc, np.where(cup, 2, 1), 0).astype(np.uint8)

    # Level-set distances in pixels give anti-aliased edges; the cup edge is softer, as in
    # real photographs where the cup is judged from the bend of the vessels as much as colour.
    disc_alpha = sigmoid((1.0 - disc_level) * radius_h / (0.5 * pixel))
    cup_alpha = sigmoid((1.0 - cup_level) * cup_h / (1.2 * pixel))
    image = _blend(image, _DISC_RIM * rng.uniform(0.93, 1.03), 0.95 * disc_alpha[None])
    image = _blend(image, _CUP, 0.9 * (cup_alpha * disc_alpha)[None])

    start = np.array([cup_x, disc_y])
    toward = macula - start
    major = [_vessel_path(rng, start, toward, size, True) for _ in range(rng.integers(4, 6))]
    minor = [_vessel_path(rng, start, toward, size, False) for _ in range(rng.integers(3, 7))]
    vessels = np.maximum(
        0.85 * _draw_curves(major, size, width_px=max(2.6 * size / 128, 1.0)),
        0.7 * _draw_curves(minor, size, width_px=max(1.4 * size / 128, 0.8)),
    )
    image = _blend(image, _VESSEL, vessels[None])

    if factors["uneven_illumination"]:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        gradient = np.cos(angle) * xx + np.sin(angle) * yy
        image = image * (1.0 + 0.3 * gradient)[None]
    if factors["dark"]:
        image = image * rng.uniform(0.45, 0.65)
    field_of_view = sigmoid((0.96 - radial) / pixel)
    image = image * field_of_view[None]
    if factors["blurred"]:
        sigma_px = rng.uniform(0.015, 0.03) / pixel
        image = ndimage.gaussian_filter(image, (0.0, sigma_px, sigma_px), mode="nearest")
    return _to_uint8(image, rng), mask


# ---------------------------------------------------------------------------------------------- ood
def ood_factors(rng: np.random.Generator) -> dict[str, float | int | str]:
    """Draw the family of one out-of-distribution image; ``p_true`` is NaN, ``label`` a placeholder 0."""
    return {"family": str(rng.choice(OOD_FAMILIES)), "p_true": float("nan"), "label": 0}


def draw_ood(factors: dict, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render an image unlike any skin or fundus photograph, with one object as its mask.

    ``grating``: saturated colour stripes with a rotated patch of other stripes (the mask);
    ``cells``: bright cell-like discs on a dark background, the largest one is the mask;
    ``blocks``: blocky random colours with a smooth green blob (the mask); ``fundus``: a fundus
    photograph (another modality: "near" out-of-distribution for a skin model), its optic disc
    is the mask.

    Returns:
        ``(image, mask)``: uint8 (H, W, 3) and bool (H, W).
    """
    xx, yy = _grid(size)
    family = factors["family"]
    if family == "grating":
        image = _grating(rng, xx, yy)
        angle = rng.uniform(0.0, np.pi)
        u = np.cos(angle) * xx + np.sin(angle) * yy
        v = -np.sin(angle) * xx + np.cos(angle) * yy
        half = rng.uniform(0.25, 0.5, 2)
        mask = (np.abs(u - rng.uniform(-0.2, 0.2)) < half[0]) & (np.abs(v) < half[1])
        image = np.where(mask[None], _grating(rng, xx, yy), image)
    elif family == "cells":
        image = np.broadcast_to(rng.uniform(0.02, 0.15, 3)[:, None, None], (3, size, size))
        image = image.astype(np.float32)
        tint = rng.uniform(0.4, 1.0, 3).astype(np.float32)
        # Smallest first, so the largest cell is drawn last, unoccluded: it is the mask.
        for radius in np.sort(rng.uniform(0.05, 0.3, rng.integers(6, 14))):
            centre = rng.uniform(-0.8, 0.8, 2)
            mask = np.hypot(xx - centre[0], yy - centre[1]) < radius
            image = _blend(image, tint * rng.uniform(0.7, 1.0), mask[None].astype(np.float32))
    elif family == "fundus":
        # Near out-of-distribution: a medical image, but of another modality; the disc is the mask.
        image, classes = draw_fundus(fundus_factors(rng), size, rng)
        return image, classes > 0
    else:
        blocks = max(size // 8, 2)
        coarse = rng.uniform(0.0, 1.0, (3, blocks, blocks)).astype(np.float32)
        repeat = -(-size // blocks)
        image = np.kron(coarse, np.ones((1, repeat, repeat), dtype=np.float32))[:, :size, :size]
        centre = rng.uniform(-0.4, 0.4, 2)
        level = np.hypot(xx - centre[0], yy - centre[1]) / rng.uniform(0.25, 0.5)
        mask = level + 0.15 * _smooth_field(rng, size, 0.2) < 1.0
        image = _blend(image, np.array([0.1, 0.8, 0.2], dtype=np.float32), mask[None] * 0.9)
    return _to_uint8(image, rng), mask


def _grating(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Stripes whose three colour channels are out of phase, giving saturated rainbow bands."""
    angle = rng.uniform(0.0, np.pi)
    frequency = rng.uniform(4.0, 14.0)
    phase = rng.uniform(0.0, 2.0 * np.pi, 3)[:, None, None]
    stripes = frequency * (np.cos(angle) * xx + np.sin(angle) * yy)
    return (0.5 + 0.45 * np.cos(stripes[None] + phase)).astype(np.float32)


FAMILIES = {
    "derm": (derm_factors, draw_derm),
    "fundus": (fundus_factors, draw_fundus),
    "ood": (ood_factors, draw_ood),
}
