"""The semi-supervised loop: every method trains on tiny data, checkpoints, resumes and caches."""

import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from umlkit.semi import loop
from umlkit.semi.base import Progress
from umlkit.semi.loop import PartiallyLabeled, SemiConfig, fit_semi, get_or_train_semi
from umlkit.semi.methods import build_method, load_method


class Squares(Dataset):
    """Tiny images with one bright square (class 1) holding a brighter core (class 2)."""

    def __init__(self, n: int, num_classes: int = 2, size: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            mask = torch.zeros(size, size, dtype=torch.long)
            row, col = torch.randint(1, size - 7, (2,), generator=generator).tolist()
            mask[row : row + 6, col : col + 6] = 1
            if num_classes == 3:
                mask[row + 2 : row + 4, col + 2 : col + 4] = 2
            image = 0.2 * torch.rand(3, size, size, generator=generator) + 0.3 * mask.float()
            self.items.append(
                {"image": image, "mask": mask, "label": torch.tensor(0), "id": str(i)}
            )
        self.ids = [item["id"] for item in self.items]
        self.num_seg_classes = num_classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def tiny_config(method: str, **overrides) -> SemiConfig:
    values = dict(
        method=method,
        label_fraction=0.25,
        image_size=16,
        width=4,
        epochs=6,
        labeled_batch_size=2,
        unlabeled_batch_size=2,
        rampup_epochs=0,  # constant weights, so a falling loss means the method learns
        anneal_epochs=1000,  # keeps the evidential KL weight (and the loss) nearly constant
        lr=3e-3,
    )
    values.update(overrides)
    return SemiConfig(**values)


@pytest.mark.parametrize(
    ("method", "options", "num_classes"),
    [
        ("supervised", {}, 2),
        ("mean_teacher", {}, 2),
        ("caml", {}, 3),
        ("burl", {}, 2),
        ("burl", {"uncertainty": "evidential", "region_mode": "soft"}, 3),
    ],
)
def test_a_short_run_lowers_the_loss(method, options, num_classes):
    torch.set_num_threads(1)
    data = (Squares(16, num_classes), Squares(4, num_classes, seed=1))
    result = fit_semi(tiny_config(method, method_options=options), progress=False, data=data)
    history = result.history
    assert len(history) == 6 and history["loss"].notna().all()
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert not result.method.training
    assert len(result.labeled_ids) == 4  # 25 % of 16


def test_supervised_only_never_sees_unlabeled_images(monkeypatch):
    method = build_method("supervised", width=4)
    seen = []

    def record(images, masks, labeled, progress):
        seen.append(labeled.clone())
        return method.model(images[labeled]).seg_logits.mean(), {}

    monkeypatch.setattr(method, "training_loss", record)
    monkeypatch.setattr(loop, "build_method", lambda *args, **kwargs: method)
    fit_semi(tiny_config("supervised", epochs=1), progress=False, data=(Squares(16), Squares(4)))
    assert seen and all(bool(labeled.all()) for labeled in seen)


def test_partially_labeled_hides_unlabeled_masks():
    data = PartiallyLabeled(Squares(3), labeled_indices=[1])
    assert bool(data[1]["labeled"]) and data[1]["mask"].max() == 1
    assert not bool(data[0]["labeled"]) and bool((data[0]["mask"] == -1).all())
    assert [int(data[i]["dataset_index"]) for i in range(3)] == [0, 1, 2]


def test_caml_training_mode_fills_the_memory_and_test_model_is_model_v():
    torch.manual_seed(0)
    caml = build_method("caml", num_classes=2, width=4)
    images = torch.rand(4, 3, 16, 16)
    masks = torch.zeros(4, 16, 16, dtype=torch.long)
    masks[:, 4:10, 4:10] = 1
    labeled = torch.tensor([True, True, False, False])
    indices = torch.tensor([5, 2, 9, 11])
    loss, terms = caml.training_loss(images, masks, labeled, Progress(0, 0, 1.0), indices=indices)
    assert set(terms) == {"supervised", "consistency", "occ"}
    assert set(caml.memory.slots) <= {5, 2}  # one slot per labeled image, keyed by its index
    assert caml.test_model is caml.model_v
    with pytest.raises(ValueError, match="indices"):
        caml.training_loss(images, masks, labeled, Progress(0, 0, 1.0))


@pytest.mark.parametrize(
    ("method", "options"),
    # caml: its memory is resumed too (few keys per class, so that L_o samples from it)
    [("mean_teacher", {}), ("caml", {"memory_samples_per_class": 8})],
)
def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch, method, options):
    data = (Squares(16), Squares(4, seed=1))
    config = tiny_config(method, epochs=3, method_options=options)
    straight = fit_semi(config, output_dir=tmp_path / "straight", progress=False, data=data)

    original = loop._train_epoch

    def crash_in_third_epoch(method, loader, optimizer, config, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(method, loader, optimizer, config, epoch, *args)

    monkeypatch.setattr(loop, "_train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit_semi(config, output_dir=tmp_path / "resumed", progress=False, data=data)
    monkeypatch.undo()
    resumed = fit_semi(
        config, output_dir=tmp_path / "resumed", resume=True, progress=False, data=data
    )
    pd.testing.assert_frame_equal(
        straight.history.drop(columns="seconds"), resumed.history.drop(columns="seconds")
    )
    for name, tensor in straight.method.state_dict().items():
        assert torch.equal(tensor, resumed.method.state_dict()[name]), name
    if method == "caml":
        assert (straight.history["occ"] > 0).any() and len(straight.method.memory) > 0


def test_cache_trains_once_and_reloads_the_same_weights(tmp_path):
    data = (Squares(16), Squares(4, seed=1))
    config = tiny_config("caml", epochs=1)
    cached = get_or_train_semi(config, cache_dir=tmp_path, progress=False, data=data)
    again = get_or_train_semi(config, cache_dir=tmp_path, progress=False, data=data)
    assert not cached.from_cache and again.from_cache
    assert again.labeled_ids == cached.labeled_ids
    loaded = load_method(next(tmp_path.glob("*/best.pt")))
    for name, tensor in cached.method.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_resume_onto_another_configuration_is_refused(tmp_path):
    data = (Squares(16), Squares(4, seed=1))
    fit_semi(tiny_config("supervised", epochs=1), output_dir=tmp_path, progress=False, data=data)
    with pytest.raises(ValueError, match="another configuration"):
        fit_semi(
            tiny_config("supervised", epochs=1, lr=1e-2),
            output_dir=tmp_path,
            resume=True,
            progress=False,
            data=data,
        )


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="unknown semi-supervised method"):
        SemiConfig(method="fixmatch")
    with pytest.raises(ValueError, match="label_fraction"):
        SemiConfig(label_fraction=0)
    with pytest.raises(ValueError, match="data_root is not set"):
        fit_semi(SemiConfig(method="supervised"), progress=False)


def test_validation_every_few_epochs_and_always_at_the_end():
    data = (Squares(16), Squares(4, seed=1))
    result = fit_semi(
        tiny_config("supervised", epochs=3, validate_every=2), progress=False, data=data
    )
    assert result.history["val_dice"].notna().tolist() == [False, True, True]
    assert result.best_epoch in (1, 2)
    assert SemiConfig(epochs=23).validation_interval == 3


def test_cache_key_follows_the_loop_revision_but_not_the_array_cache(monkeypatch):
    config = tiny_config("caml", data_root="/data/fundus")
    key = loop.semi_config_hash(config)
    assert (
        loop.semi_config_hash(tiny_config("caml", data_root="/data/fundus", array_cache="/x"))
        == key
    )
    monkeypatch.setattr(loop, "SEMI_REVISION", loop.SEMI_REVISION + 1)
    assert loop.semi_config_hash(config) != key  # runs of older loop code are not reused


def test_every_method_trains_with_fused_adam_on_a_cpu(monkeypatch):
    made = []
    original = loop.make_optimizer

    def recording(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(loop, "make_optimizer", recording)
    fit_semi(tiny_config("caml", epochs=1), progress=False, data=(Squares(8), Squares(2, seed=1)))
    (optimizer,) = made
    assert optimizer.defaults["fused"] is True


def test_resume_onto_a_damaged_checkpoint_is_one_clear_error(tmp_path):
    data = (Squares(16), Squares(4, seed=1))
    config = tiny_config("supervised", epochs=1)
    fit_semi(config, output_dir=tmp_path, progress=False, data=data)
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"last.pt is empty \(0 bytes\)") as caught:
        fit_semi(config, output_dir=tmp_path, resume=True, progress=False, data=data)
    assert "\n" not in str(caught.value)
    (tmp_path / "best.pt").write_bytes((tmp_path / "best.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"best.pt is truncated or corrupt"):
        load_method(tmp_path / "best.pt")


def test_the_half_budget_is_the_best_validated_epoch_of_the_first_half(tmp_path, monkeypatch):
    # validation Dice rises every epoch: after 6 epochs the half budget is epoch 2 (of 0-2)
    scores = iter([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    monkeypatch.setattr(loop, "_validation_dice", lambda method, val_set, device: next(scores))
    data = (Squares(16), Squares(4, seed=1))
    config = tiny_config("supervised", epochs=6, validate_every=1)
    result = get_or_train_semi(config, cache_dir=tmp_path, progress=False, data=data)
    assert result.best_epoch == 5 and result.half_epoch == 2
    assert result.convergence.still_improving and not result.convergence.plateaued
    again = get_or_train_semi(config, cache_dir=tmp_path, progress=False, data=data)
    assert again.from_cache and again.half_epoch == 2
    half = loop.half_budget_method(again)
    for name, tensor in result.half_state.items():
        assert torch.equal(half.state_dict()[name], tensor), name
    assert not any(
        torch.equal(tensor, result.method.state_dict()[name])
        for name, tensor in result.half_state.items()
        if tensor.is_floating_point() and tensor.numel() > 1
    ), "the half-budget weights are the final ones"


def test_a_run_without_half_budget_weights_says_so():
    data = (Squares(16), Squares(4, seed=1))
    result = fit_semi(tiny_config("supervised", epochs=1), progress=False, data=data)
    result.half_state = None
    with pytest.raises(ValueError, match="keeps no half-budget weights"):
        loop.half_budget_method(result)
