"""Label-preserving augmentation of image batches and their masks, for the training loops.

:func:`umlkit.train.train` calls :func:`augment_batch` on every batch with a generator seeded from
the run's seed and the epoch, so an epoch's augmentation does not depend on what ran before it.
"""

from __future__ import annotations

import torch

#: Label-preserving augmentations :func:`augment_batch` knows.
AUGMENTATIONS = ("none", "flip", "dihedral")


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, kind: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random symmetry per image to images (B,C,H,W) and masks (B,H,W) alike.

    ``"flip"``: horizontal and vertical flips, each with probability 1/2. ``"dihedral"``: those
    and a rotation by a random multiple of 90 degrees (the 8 symmetries of the square; square
    images only). Both keep the synthetic derm labels (border, asymmetry, colours and size do
    not change under them); a vertical cup-to-disc ratio (fundus) survives flips but not
    rotations. The paper trains without augmentation (``"none"``).
    """
    if kind == "none":
        return images, masks
    flips = torch.randint(0, 2, (len(images), 2), generator=generator).tolist()
    turns = torch.randint(0, 4, (len(images),), generator=generator).tolist()
    out_images, out_masks = [], []
    for image, mask, (flip_h, flip_v), turn in zip(images, masks, flips, turns, strict=True):
        dims = [d for d, flip in ((-1, flip_h), (-2, flip_v)) if flip]
        if dims:
            image, mask = image.flip(dims), mask.flip(dims)
        if kind == "dihedral" and turn:
            image, mask = image.rot90(turn, (-2, -1)), mask.rot90(turn, (-2, -1))
        out_images.append(image)
        out_masks.append(mask)
    return torch.stack(out_images), torch.stack(out_masks)
