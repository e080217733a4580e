"""On-disk layouts of the real datasets, shared by the synthetic writers and the loaders.

Keeping the folder names and the mask encodings in one place guarantees that what
:func:`umlkit.data.make_synthetic` writes is exactly what :func:`umlkit.data.load_dataset` reads.

ISIC 2017 (skin lesions; 2000 / 150 / 600 images)::

    ISIC-2017_Training_Data/ISIC_0000000.jpg
    ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png      0 / 255
    ISIC-2017_Training_Part3_GroundTruth.csv        image_id,melanoma,seborrheic_keratosis
    (the same with ``Validation`` and ``Test_v2`` in place of ``Training``)

REFUGE (glaucoma fundus; 400 / 400 / 400 images), as the challenge's archives unpack::

    Training400/Glaucoma/g0001.jpg, Training400/Non-Glaucoma/n0001.jpg   label = folder name
    Annotation-Training400/Disc_Cup_Masks/Glaucoma/g0001.bmp             0 cup, 128 rim, 255 rest
    REFUGE-Validation400/V0001.jpg
    REFUGE-Validation400-GT/Disc_Cup_Masks/V0001.bmp
    REFUGE-Validation400-GT/<any>.xlsx                                   columns ImgName, Glaucoma Label
    Test400/T0001.jpg
    REFUGE-Test-GT/Disc_Cup_Masks/G/T0001.bmp, .../N/T0002.bmp            G = glaucoma, N = not
    REFUGE-Test-GT/<any>.xlsx

The loaders look for these folders in the dataset root and up to two levels below it (the
archives often unpack into an extra folder of the same name).
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")

# ---------------------------------------------------------------------------------------- ISIC 2017
ISIC_SPLIT_WORDS = {"train": "Training", "val": "Validation", "test": "Test_v2"}
ISIC_LABEL_COLUMNS = ("image_id", "melanoma", "seborrheic_keratosis")
#: ISIC lesion masks store the lesion as 255 and the background as 0.
ISIC_MASK_VALUES = {0: 0, 255: 1}


def isic_paths(root: Path, split: str) -> dict[str, Path]:
    """The image folder, mask folder and label CSV of an ISIC 2017 ``split`` under ``root``."""
    word = ISIC_SPLIT_WORDS[split]
    root = Path(root)
    return {
        "images": root / f"ISIC-2017_{word}_Data",
        "masks": root / f"ISIC-2017_{word}_Part1_GroundTruth",
        "labels": root / f"ISIC-2017_{word}_Part3_GroundTruth.csv",
    }


def isic_mask_name(image_id: str) -> str:
    """The mask file name of an ISIC image id: ``ISIC_0000000`` -> ``ISIC_0000000_segmentation.png``."""
    return f"{image_id}_segmentation.png"


# ------------------------------------------------------------------------------------------- REFUGE
#: Folder names per split: ``images`` holds the photographs, ``ground_truth`` the masks (under a
#: ``Disc_Cup_Masks`` folder) and, for validation and test, the label spreadsheet. Several names
#: are accepted because the archives and common re-uploads name them slightly differently.
REFUGE_FOLDERS = {
    "train": {"images": ("Training400",), "ground_truth": ("Annotation-Training400",)},
    "val": {
        "images": ("REFUGE-Validation400", "Validation400"),
        "ground_truth": ("REFUGE-Validation400-GT", "Validation400-GT"),
    },
    "test": {
        "images": ("Test400", "REFUGE-Test400"),
        "ground_truth": ("REFUGE-Test-GT", "REFUGE-Test400-GT", "Test400-GT"),
    },
}
REFUGE_MASK_FOLDER = "Disc_Cup_Masks"
#: Folder names that carry the glaucoma label (1 = glaucoma).
REFUGE_LABEL_FOLDERS = {"Glaucoma": 1, "Non-Glaucoma": 0, "G": 1, "N": 0}
#: The label spreadsheet's columns (the image name and the label, 1 = glaucoma).
REFUGE_XLSX_COLUMNS = ("ImgName", "Glaucoma Label")
#: REFUGE mask grey values -> umlkit classes: 255 background -> 0, 128 rim -> 1, 0 cup -> 2.
REFUGE_MASK_VALUES = {255: 0, 128: 1, 0: 2}
REFUGE_SEG_CLASSES = ("background", "rim", "cup")

# ------------------------------------------------------------------------------------- folder kind
FOLDER_LAYOUT = {"images": "images", "masks": "masks", "labels": "labels.csv"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_macos_metadata(path: Path) -> bool:
    """Whether ``path`` is a file macOS keeps beside the real ones, which the loaders skip.

    ``.DS_Store`` (a folder's view settings), and AppleDouble files: ``._ISIC_0000000.jpg``
    holds the attributes of ``ISIC_0000000.jpg`` where the file system (a USB stick, a network
    share) or an archive (zip, tar) cannot. The latter carry the image's suffix but are no image.
    """
    return path.name == ".DS_Store" or path.name.startswith("._")


def find_folder(root: Path, names: tuple[str, ...], max_depth: int = 2) -> Path | None:
    """The first folder named one of ``names`` in ``root`` or up to ``max_depth`` levels below.

    Breadth-first, so the shallowest match wins; among equally deep matches the order of
    ``names`` and then the alphabetical order decide (deterministic on every file system).
    """
    level = [Path(root)]
    for _ in range(max_depth + 1):
        for name in names:
            for folder in level:
                if (folder / name).is_dir():
                    return folder / name
        level = sorted(sub for folder in level for sub in folder.iterdir() if sub.is_dir())
    return None
