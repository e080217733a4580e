"""Run profiles and the one setup idiom every notebook shares.

A *profile* sizes a whole run of the notebooks with a single switch (STYLE.md: "one ``profile``
parameter, not scattered ``if CI`` branches"):

``smoke``
    tiny data and one or two epochs; what nbval runs in CI (the whole sequence in a few minutes).
``default``
    ``make figures``: the quick profile, every notebook in about 20 minutes on a 2-core CPU; the
    models train for a fixed, short budget, so its comparisons are *not* converged: each notebook
    prints the converged reference's numbers beside its own and flags where they disagree.
``reference``
    ``make reference``: the same synthetic data, every comparison trained for its whole schedule
    (16 epochs; notebook 09's runs 1500 steps), each run reporting whether its validation score
    plateaued (:mod:`umlkit.convergence`), with the seeds the conclusions need; its figures and
    ``figures/results.{md,json}`` are the committed ones, which the README and the course website
    show.
``paper``
    real datasets at paper size; meant for a GPU, takes hours.

Each notebook's ``parameters`` cell holds ``profile`` plus the paths it reads and writes; the
setup cell then calls :func:`setup_notebook`, which resolves paths, seeds every generator and picks
the device::

    ctx = setup_notebook("03_training", profile)
    ctx.settings["train"]["epochs"]     # profile-specific sizes
    ctx.save_figure(fig, "curves")  # reference profile -> figures/03_training_curves.{png,pdf}

Figures of the ``reference`` profile go to ``figures/`` (they are committed); the other profiles
write to ``build/figures-<profile>/`` (:func:`figures_dir_for`), so that neither a CI smoke run nor
a quick default run ever overwrites the committed figures.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from umlkit.runtime import pick_device, project_root, seed_everything

PROFILES = ("smoke", "default", "reference", "paper")
#: The profile whose figures and results are committed (``figures/``).
COMMITTED_PROFILE = "reference"

#: Sizes per profile. ``data`` sizes the synthetic datasets, ``train`` the supervised runs,
#: ``compare`` what the notebooks that compare models (04-08, ``setup_notebook(...,
#: compare=True)``) change in ``train``, ``semi`` the semi-supervised comparison (notebook 09).
#: The reference recipe (docs/decisions.md): Adam at this rate, batches of 32, the schedule of
#: TrainConfig stretched over at most this many epochs.
REFERENCE_LR = 3e-3
REFERENCE_MAX_EPOCHS = 16

#: The default profile's semi-supervised comparison (notebook 09); the reference runs it longer.
_DEFAULT_SEMI: dict[str, Any] = {
    # enough steps for the supervised baseline to converge at each label fraction, and
    # fractions small enough that more labels still help it (notebook 09 checks both)
    "steps": 500,
    "image_size": 32,
    "width": 8,
    "lr": 3e-3,
    "labeled_batch_size": 4,
    "unlabeled_batch_size": 4,
    "label_fractions": [0.01, 0.05],
    "seeds": [0, 1, 2],
    # the default comparison leaves out the mean teacher (add it with the notebook's
    # ``methods`` parameter): CAML and BURL are the methods umlkit teaches
    "methods": ["supervised", "caml", "burl"],
    # CAML's official Dropout2d(0.5) on the last decoder feature drops half of only 8
    # channels at this width (the official network has 16); docs/decisions.md
    "method_options": {"caml": {"feature_dropout": 0.0}},
    "workers": 2,
}

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "data": {"n": 48, "size": 64, "n_ood": 16},
        "train": {
            "epochs": 2,
            "width": 8,
            "image_size": 64,
            "batch_size": 8,
            "augment": "dihedral",
            "seeds": [0],
        },
        # the comparing notebooks (04-08) run the same code on images of half the side
        "compare": {"image_size": 32},
        "semi": {
            "steps": 4,
            "image_size": 32,
            "width": 4,
            "lr": 3e-3,
            "labeled_batch_size": 2,
            "unlabeled_batch_size": 2,
            "label_fractions": [0.2],
            "seeds": [0],
            "workers": 1,
        },
    },
    "default": {
        # Sized so that make figures fits 2 CPU cores: notebook 03 trains one UML at 48 px, the
        # comparisons of 04-08 train every variant at 32 px, and 09 trains the semi-supervised
        # methods at 32 px (docs/decisions.md: how these sizes were chosen).
        "data": {"n": 6000, "size": 128, "n_ood": 100, "workers": 2},  # 2 drawing processes
        "train": {
            "epochs": 4,
            "width": 8,
            "image_size": 48,
            "batch_size": 16,
            "lr": 3e-3,
            "augment": "dihedral",
            "seeds": [0],  # notebook 03 trains one seed; "-p seeds '[0, 1, 2]'" trains three
            "workers": 2,  # two training processes of one thread share the 2 cores
            "uml_options": {},  # model options of every UML variant; {}: the official sizes
        },
        # The mixer of the compared UML variants projects to P = width channels instead of the
        # official ratio P = 4 * width (a size, scaled so that notebook 04's trainings fit).
        "compare": {
            "image_size": 32,
            "batch_size": 32,
            "epochs": 2,
            "seeds": [0, 1, 2],
            "uml_options": {"mixer_width": 8},
        },
        "semi": _DEFAULT_SEMI,
    },
    # The converged reference (make reference): the default profile's data and sizes, every
    # comparison trained for the whole schedule, each run reporting whether its validation score
    # plateaued (umlkit.convergence: running mean over 3 epochs, plateaued once 4 epochs raised its
    # best by at most 0.005). No early stopping: with patience 4, 10 of 24 runs stopped during the
    # apparent plateau of the constant-rate phase, below the runs that went on (docs/decisions.md).
    # Notebook 03 trains at the compared settings, so its model is notebook 04's UML of seed 0
    # (trained once). The recipe (rate, batch, maximum) was chosen by umlkit.benchmarks.recipe
    # (docs/decisions.md, "The reference recipe").
    "reference": {
        "data": {"n": 6000, "size": 128, "n_ood": 100, "workers": 2, "folder": "default"},
        "train": {
            "epochs": REFERENCE_MAX_EPOCHS,
            "patience": None,
            "width": 8,
            "image_size": 32,
            "batch_size": 32,
            "lr": REFERENCE_LR,
            "augment": "dihedral",
            "seeds": [0],
            "workers": 2,
            "uml_options": {"mixer_width": 8},
        },
        "compare": {"seeds": [0, 1, 2]},
        # the default's comparison, three times the steps, validated often enough for the
        # plateau rule to have points to judge
        "semi": {**_DEFAULT_SEMI, "steps": 1500, "validations": 20},
    },
    # The official training configuration (KarryRen/UML; notebooks/params/paper.yaml cites the
    # file of every number). The 2024 configs (exp_refuge/config_refuge.py,
    # exp_ispy/config_ispy.py) agree on all training values, so they are ``train``; what differs
    # per dataset is in ``datasets``. The 2023 config.py is not followed where it disagrees: its
    # EPOCH = 1 and LEARNING_RATE = 1e-5 (equal to the schedule's floor, so no decay) are not a
    # run that trains (docs/fidelity.md). ``umlkit train --profile paper`` reads every ``train``
    # value; the notebooks read width, image size, epochs, batch size, rate and augmentation,
    # and the other values are TrainConfig's defaults (tests/test_paper_profile.py checks it).
    # Among those defaults, amp: on a GPU the forward pass runs under bf16 autocast (the official
    # runs are float32; TrainConfig(amp=False) gives float32; docs/fidelity.md, "precision").
    "paper": {
        "data": {"n": 2000, "size": 256, "n_ood": 200},
        "train": {
            "epochs": 100,  # EPOCH
            # umlkit's encoders are trained from scratch at width * 2**level channels; the
            # official ones are ImageNet-pretrained Res2Net-50 / VGG16-BN (64 channels first),
            # which umlkit cannot download (docs/fidelity.md)
            "width": 32,
            "image_size": 256,  # refuge_preprocess.py: IMAGE_SIZE = 256
            # the official global batch: DataParallel splits BATCH_SIZE over the GPUs; umlkit's
            # batch_size is the global batch too, split over the torchrun processes (README)
            "batch_size": 8,
            "lr": 1e-4,  # LEARNING_RATE; Adam
            "weight_decay": 1e-5,  # WEIGHT_DECAY
            "constant_fraction": 0.3,  # CHANGE_EPOCH = 30 of 100, then poly(POWER = 0.9)
            "min_lr": 1e-5,  # the floor of utils.adjust_lr / lr_poly
            "loss_weights": [0.5, 0.4, 0.1],  # CLS_, SEG_, MUT_LOSS_WEIGHT
            "anneal_epochs": 50,  # CLS_ANNEALING_EPOCH = SEG_ANNEALING_EPOCH = 50
            "augment": "none",  # the official loaders do not augment
            "seeds": [0, 1, 2],
        },
        # Per dataset: what the official configs give beyond ``train``. ``train`` holds
        # TrainConfig values that replace the common ones (none differ in the 2024 configs);
        # ``gpus`` is the number of GPUs the official run used (GPU_ID, DataParallel over one
        # global batch); ``train_images`` sizes an epoch (TRAIN_NUM).
        "datasets": {
            # no official ISIC 2017 configuration was published: the 2024 values, 2000 images
            "isic2017": {"train": {}, "gpus": None, "train_images": 2000},
            "refuge": {"train": {}, "gpus": 2, "train_images": 400},
            # slices are kept at the volumes' size by ispy_preprocess.py; umlkit resizes to 256
            "ispy1": {"train": {}, "gpus": 3, "train_images": 1270},
        },
        "compare": {},
        "semi": {
            "steps": 6000,
            "image_size": 256,
            "width": 16,
            "lr": 1e-3,
            "labeled_batch_size": 2,
            "unlabeled_batch_size": 2,
            "label_fractions": [0.05, 0.1, 0.2],  # CAML's LA fractions
            "seeds": [0, 1, 2],
            "workers": 1,
        },
    },
}


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of :data:`PROFILES`, else raise a ``ValueError`` saying so."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def get_settings(profile: str) -> dict[str, dict[str, Any]]:
    """A deep copy of the sizes of ``profile`` (safe to modify in a notebook)."""
    return copy.deepcopy(SETTINGS[check_profile(profile)])


@dataclass
class NotebookContext:
    """What a notebook's setup cell returns: resolved paths, sizes and the device."""

    name: str
    profile: str
    root: Path
    data_dir: Path
    figures_dir: Path
    settings: dict[str, dict[str, Any]]
    seed: int = 0
    device: str = "cpu"
    figures_written: list[Path] = field(default_factory=list)

    def synthetic_root(self, kind: str) -> Path:
        """Where the synthetic dataset ``kind`` of this profile lives:
        ``data/synthetic/<kind>-<folder>``, where ``folder`` is the profile's ``data["folder"]``
        (the reference profile reads the default profile's data) or else its name."""
        folder = self.settings["data"].get("folder", self.profile)
        return self.data_dir / "synthetic" / f"{kind}-{folder}"

    def save_figure(self, fig, name: str) -> list[Path]:
        """Save ``fig`` as ``<figures_dir>/<notebook>_<name>.png`` and ``.pdf``; return the paths.

        Both files are cut to the figure's tight bounding box, as ``bbox_inches="tight"`` cuts
        them, from one layout of the figure for both (:func:`laid_out_once`). In a notebook the
        cell then shows the PNG just written (:func:`show_saved_png`): what the notebook shows
        is what the file holds.
        """
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        png, pdf = (self.figures_dir / f"{self.name}_{name}.{ext}" for ext in ("png", "pdf"))
        with laid_out_once(fig, dpi=PNG_DPI) as box:
            fig.savefig(png, dpi=PNG_DPI, bbox_inches=box)
            # No creation date in the PDF: the same figure gives the same bytes on a rerun.
            fig.savefig(pdf, bbox_inches=box, metadata={"CreationDate": None})
        self.figures_written.extend([png, pdf])
        show_saved_png(fig, png)
        return [png, pdf]


#: Resolution of the saved PNG figures.
PNG_DPI = 150


def show_saved_png(fig, png: Path) -> bool:
    """In a Jupyter kernel with matplotlib's inline backend, show the PNG that ``fig`` was saved
    to, at the size the figure has on screen, and close ``fig``; return whether it did.

    The inline backend would otherwise lay the figure out and draw it once more when the cell
    ends, about a third of the time a figure costs (``docs/decisions.md``). The PNG has
    :data:`PNG_DPI` pixels per inch and is shown at the figure's own ``dpi``, so it looks as
    large as the figure would and sharper on a high-resolution screen. Elsewhere (a script, an
    interactive backend such as ``%matplotlib widget``) nothing is shown or closed.
    """
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        return False
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return False
    if get_ipython() is None:
        return False
    import matplotlib.pyplot as plt
    from PIL import Image as PILImage

    with PILImage.open(png) as saved:
        width = round(saved.width * fig.dpi / PNG_DPI)
    display(Image(filename=str(png), width=width))
    plt.close(fig)
    return True


@contextmanager
def laid_out_once(fig, dpi: float):
    """Lay ``fig`` out once, at ``dpi``, and yield its tight bounding box (padded by
    ``savefig.pad_inches``, as ``bbox_inches="tight"`` pads it), with the layout engine off until
    the block ends: save every file inside with ``bbox_inches=box``.

    ``fig.savefig(path, bbox_inches="tight")`` runs the figure's layout engine before each file
    (constrained layout measures every label: about half the time of a save). The engine is
    switched back on when the block ends, so the figure still lays itself out when it is drawn
    again or resized. Text measured at another resolution than a file's can come out a fraction
    of a pixel wider or narrower, which shifts its panels: ``dpi`` is that of the PNG, whose
    pixels then match those of a tight ``savefig``.
    """
    import matplotlib as mpl

    engine = fig.get_layout_engine()
    shown_dpi = fig.dpi
    fig.set_dpi(dpi)
    try:
        fig.draw_without_rendering()  # runs the layout engine
        box = fig.get_tightbbox().padded(mpl.rcParams["savefig.pad_inches"])
    finally:
        fig.set_dpi(shown_dpi)
    if engine is not None:
        fig.set_layout_engine("none")
    try:
        yield box
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)


def setup_notebook(
    name: str,
    profile: str | None,
    *,
    seed: int = 0,
    figures_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    compare: bool = False,
) -> NotebookContext:
    """The shared first cell of every notebook: paths, seed, device and the plotting theme.

    Args:
        name: the notebook's stem, e.g. ``"03_training"``; prefixes the figure files.
        profile: ``"smoke"``, ``"default"``, ``"reference"`` or ``"paper"``; ``None`` reads ``$UMLKIT_PROFILE``
            (``make test`` sets it to smoke) and falls back to ``"default"``.
        seed: seeds Python, NumPy and torch.
        figures_dir: where figures go; default :func:`figures_dir_for` the profile: ``figures/``
            for the reference profile, ``build/figures-<profile>/`` for the others (neither CI
            nor a quick run overwrites the committed figures).
        data_dir: the data folder; default ``<root>/data``.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``; default: the best one available.
        compare: ``True`` in the notebooks that compare models (04-08): the profile's
            ``compare`` entries replace those of ``settings["train"]`` (in the default profile
            a smaller image size, so that 8 models x 3 seeds fit a 2-core CPU's budget), and
            ``settings["train"]`` is the budget every compared model trains with.

    Returns:
        A :class:`NotebookContext`.
    """
    profile = env_profile() if profile is None else check_profile(profile)
    root = project_root()
    if figures_dir is None:
        figures_dir = figures_dir_for(root, profile)
    data_dir = root / "data" if data_dir is None else Path(data_dir)
    seed_everything(seed)
    if device is None:
        device = pick_device()
    try:
        from umlkit.plots import set_theme
    except ImportError:  # plots are optional for a bare data notebook
        pass
    else:
        set_theme()
    settings = get_settings(profile)
    if compare:
        settings["train"].update(settings["compare"])
    return NotebookContext(
        name=name,
        profile=profile,
        root=root,
        data_dir=Path(data_dir),
        figures_dir=Path(figures_dir),
        settings=settings,
        seed=seed,
        device=device,
    )


def figures_dir_for(root: str | Path, profile: str) -> Path:
    """Where the figures of ``profile`` go: ``figures/`` for :data:`COMMITTED_PROFILE`,
    ``build/figures-<profile>/`` for every other profile."""
    root = Path(root)
    if check_profile(profile) == COMMITTED_PROFILE:
        return root / "figures"
    return root / "build" / f"figures-{profile}"


def notebooks_dir_for(root: str | Path, profile: str) -> Path:
    """Where the executed notebooks of ``profile`` go: ``build/notebooks/`` for
    :data:`COMMITTED_PROFILE` (the website shows them), ``build/notebooks-<profile>/`` else."""
    root = Path(root)
    if check_profile(profile) == COMMITTED_PROFILE:
        return root / "build" / "notebooks"
    return root / "build" / f"notebooks-{profile}"


def env_profile(default: str = "default") -> str:
    """The profile named by the ``UMLKIT_PROFILE`` environment variable (``make test`` sets smoke)."""
    return check_profile(os.environ.get("UMLKIT_PROFILE", default))


#: Entries of a profile's ``train`` settings that size the notebooks, not one training run.
_NOTEBOOK_ONLY = ("workers",)


def profile_train_values(profile: str, dataset: str) -> dict:
    """The TrainConfig values of ``profile``'s ``train`` settings, for data of kind ``dataset``.

    The profile's ``train`` entry, then (the ``paper`` profile) its ``datasets[dataset]["train"]``
    entry on top. ``seeds`` gives the first seed, ``uml_options`` the model options; every
    other key must be a :class:`~umlkit.train.TrainConfig` field, so that a misspelt setting
    fails here instead of being ignored.

    Raises:
        ValueError: a key that is no TrainConfig field, or a malformed ``datasets`` entry.
    """
    from umlkit.train import TrainConfig

    settings = get_settings(profile)
    known = {f.name for f in fields(TrainConfig)}
    values: dict = {}
    layers = [("train", settings["train"])]
    entry = settings.get("datasets", {}).get(dataset)
    if entry is not None:
        extra = sorted(set(entry) - {"train", "gpus", "train_images"})
        if extra:
            raise ValueError(f"profile {profile}: datasets.{dataset} has unknown entries {extra}")
        layers.append((f"datasets.{dataset}.train", entry.get("train", {})))
    for where, layer in layers:
        for key, value in layer.items():
            if key == "seeds":
                values["seed"] = int(list(value)[0])
            elif key == "uml_options":
                values["model_options"] = dict(value)
            elif key in known:
                values[key] = value
            elif key not in _NOTEBOOK_ONLY:
                raise ValueError(
                    f"profile {profile}: {where}.{key} is not a training setting; "
                    f"TrainConfig has {', '.join(sorted(known))}"
                )
    return values
