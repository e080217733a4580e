"""Data: synthetic datasets in real layouts, the real-dataset loaders, and corruptions.

* :func:`make_synthetic` writes a synthetic ``derm`` (ISIC 2017 layout), ``fundus`` (REFUGE) or
  ``ood`` dataset with known true probabilities; :func:`bayes_optimal_scores` says how well the
  best possible classifier does on it; :func:`synthetic_metadata` gives its table without pixels.
* :func:`load_dataset` reads ``isic2017``, ``refuge``, ``ispy1`` and ``folder`` datasets (and the
  synthetic ones) as torch datasets of ``{"image", "mask", "label", "id"}`` dicts.
* :class:`Corruption` / :func:`corrupt`: Gaussian noise, salt-and-pepper, blur, contrast loss.
* :func:`descriptor_baseline`: how much of the label simple descriptors of the true mask carry.
"""

from umlkit.data.base import (
    DatasetItemError,
    MissingFileError,
    SegmentationClassificationDataset,
    stratified_split,
)
from umlkit.data.corruptions import CORRUPTIONS, DEFAULT_SEVERITIES, Corruption, corrupt
from umlkit.data.descriptors import DESCRIPTORS, descriptor_baseline, mask_descriptors
from umlkit.data.ispy1 import preprocess_ispy1
from umlkit.data.loaders import KINDS, cup_mask, disc_mask, load_dataset, rim_mask
from umlkit.data.synthetic import (
    LOADER_KIND,
    SYNTHETIC_KINDS,
    bayes_optimal_scores,
    make_synthetic,
    synthetic_metadata,
)

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_SEVERITIES",
    "DESCRIPTORS",
    "KINDS",
    "LOADER_KIND",
    "SYNTHETIC_KINDS",
    "Corruption",
    "DatasetItemError",
    "MissingFileError",
    "SegmentationClassificationDataset",
    "bayes_optimal_scores",
    "corrupt",
    "cup_mask",
    "descriptor_baseline",
    "disc_mask",
    "load_dataset",
    "make_synthetic",
    "mask_descriptors",
    "preprocess_ispy1",
    "rim_mask",
    "stratified_split",
    "synthetic_metadata",
]
