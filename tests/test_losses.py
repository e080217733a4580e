"""umlkit.losses: (log-)Dice, the three UML terms and the combined objective."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from umlkit.evidential import kl_to_uniform
from umlkit.losses import (
    UMLObjective,
    classification_loss,
    dice_loss,
    mutual_loss,
    official_objective,
    segmentation_loss,
    softmax_classification_loss,
    softmax_mutual_loss,
    uml_objective,
)

# One image, two classes, two pixels: class 0 probabilities (0.8, 0.4), class 1 (0.2, 0.6);
# the target is (0, 1).
PROBS = torch.tensor([[[[0.8, 0.4]], [[0.2, 0.6]]]])
TARGET = torch.tensor([[[0, 1]]])


def test_dice_loss_hand_computed():
    # D_0 = 2 * 0.8 / (1.2 + 1) = 0.72727..., D_1 = 2 * 0.6 / (0.8 + 1) = 0.66667
    d0, d1 = 1.6 / 2.2, 1.2 / 1.8
    assert dice_loss(PROBS, TARGET, eps=0).item() == pytest.approx(((1 - d0) + (1 - d1)) / 2)
    assert dice_loss(PROBS, TARGET, log=True, eps=0).item() == pytest.approx(
        (-math.log(d0) - math.log(d1)) / 2
    )
    assert dice_loss(PROBS, TARGET, include_background=False, eps=0).item() == pytest.approx(1 - d1)
    # eps = 1e-5 moves the value by about 1e-5 only
    assert dice_loss(PROBS, TARGET).item() == pytest.approx(((1 - d0) + (1 - d1)) / 2, abs=1e-4)


def test_dice_loss_pools_the_batch():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 4, 4, generator=generator), dim=1)
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    # batch-wise: the same as one image made of both images side by side
    side_by_side = torch.cat([probs[0], probs[1]], dim=2).unsqueeze(0)
    torch.testing.assert_close(
        dice_loss(probs, target),
        dice_loss(side_by_side, torch.cat([target[0], target[1]], 1)[None]),
    )


def test_dice_loss_is_zero_for_a_perfect_prediction_and_empty_classes_count_as_one():
    target = torch.tensor([[[0, 1], [1, 0]]])
    one_hot = F.one_hot(target, 3).movedim(-1, 1).float()  # class 2 absent from both
    assert dice_loss(one_hot, target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_rejects_bad_input():
    with pytest.raises(ValueError, match=r"target must have shape \(1, 1, 2\)"):
        dice_loss(PROBS, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="outside"):
        dice_loss(PROBS, torch.tensor([[[0, 2]]]))
    with pytest.raises(ValueError, match="integer class indices"):
        dice_loss(PROBS, TARGET.float())
    with pytest.raises(ValueError, match="at least 2 classes"):
        dice_loss(PROBS[:, :1], torch.zeros(1, 1, 2, dtype=torch.long), include_background=False)


def test_classification_loss_hand_computed():
    # epoch 0: lambda = 0, loss = psi(4) - psi(3) = 1/3
    assert classification_loss(torch.tensor([[3.0, 1.0]]), torch.tensor([0]), 0).item() == (
        pytest.approx(1 / 3, rel=1e-5)
    )
    # alpha = (1, 3), label 0, epoch 50 of 50 (lambda = 1):
    # psi(4) - psi(1) = 1 + 1/2 + 1/3 and KL = ln 3 - 2/3
    value = classification_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([0]), 50, 50).item()
    assert value == pytest.approx(1 + 1 / 2 + 1 / 3 + math.log(3) - 2 / 3, rel=1e-5)
    # epoch 25 of 50: half the KL
    half = classification_loss(torch.tensor([[1.0, 3.0]]), torch.tensor([0]), 25, 50).item()
    assert half == pytest.approx(1 + 1 / 2 + 1 / 3 + (math.log(3) - 2 / 3) / 2, rel=1e-5)


def test_classification_loss_rejects_bad_labels():
    with pytest.raises(ValueError, match="out of range"):
        classification_loss(torch.tensor([[3.0, 1.0]]), torch.tensor([5]), 0)


def test_softmax_classification_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0]])
    # -ln(e^2 / (e^2 + 1))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert softmax_classification_loss(logits, torch.tensor([0])).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="labels must be a tensor of shape"):
        softmax_classification_loss(logits, torch.tensor([0, 1]))


def test_segmentation_loss_with_and_without_side_outputs():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    mask = torch.randint(0, 3, (2, 8, 8), generator=generator)
    plain = dice_loss(torch.softmax(logits, 1), mask, log=True)  # official: log-Dice
    torch.testing.assert_close(segmentation_loss(logits, None, mask), plain)
    torch.testing.assert_close(segmentation_loss(logits, [], mask), plain)
    linear = segmentation_loss(logits, None, mask, log=False)  # umlkit's option: 1 - Dice
    torch.testing.assert_close(linear, dice_loss(torch.softmax(logits, 1), mask))
    side = torch.randn(2, 3, 4, 4, generator=generator)
    upsampled = F.interpolate(side, size=(8, 8), mode="bilinear", align_corners=False)
    expected = (plain + dice_loss(torch.softmax(upsampled, 1), mask, log=True)) / 2
    torch.testing.assert_close(segmentation_loss(logits, [side], mask), expected)
    with_ce = segmentation_loss(logits, None, mask, ce_weight=0.5)
    torch.testing.assert_close(with_ce, plain + 0.5 * F.cross_entropy(logits, mask))


def test_official_2023_seg_loss_is_the_mean_log_dice_of_four_outputs_by_hand():
    """train_Breast.py: [Dice(s0) + Dice(s1) + Dice(s2) + Dice(s3)] / 4, Dice = mean_c -ln D_c."""
    # One image of 2 pixels, 2 classes, probabilities chosen through logits ln(p / (1 - p)).
    mask = torch.tensor([[[0, 1]]])  # (1, 1, 2): pixel 0 is class 0, pixel 1 is class 1

    def logits_of(p0, p1):  # foreground probability of each pixel
        fg = torch.tensor([p0, p1]).logit()
        return torch.stack([torch.zeros(2), fg]).view(1, 2, 1, 2)

    outputs = [logits_of(0.5, 0.5), logits_of(0.25, 0.75), logits_of(0.5, 0.9), logits_of(0.5, 0.5)]

    def log_dice(p0, p1):  # D_bg = (2 (1-p0) + e) / ((1-p0) + (1-p1) + 1 + e), D_fg likewise
        eps = 1e-5
        d_bg = (2 * (1 - p0) + eps) / ((1 - p0) + (1 - p1) + 1 + eps)
        d_fg = (2 * p1 + eps) / (p0 + p1 + 1 + eps)
        return (-math.log(d_bg) - math.log(d_fg)) / 2

    expected = log_dice(0.5, 0.5) + log_dice(0.25, 0.75) + log_dice(0.5, 0.9) + log_dice(0.5, 0.5)
    expected /= 4
    got = segmentation_loss(outputs[0], outputs[1:], mask)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # -ln(2 * 0.5 / 2) = ln 2 for the 0.5/0.5 output
    assert log_dice(0.5, 0.5) == pytest.approx(math.log(2), rel=1e-4)


def test_official_2024_objective_adds_ce_on_the_final_output_and_sums_mutual_levels():
    """train_uml_refuge.py written out with torch alone (no umlkit loss function):

    L = 0.5 L_cls + 0.4 [logDice(softmax z) + CE(z)] + 0.1 sum over four levels of
    [logDice(p) + mean psi(S) - psi(alpha_y) + lambda_t mean KL], lambda_t = min(1, t / 50),
    with umlkit's declared deviation p = alpha / S in the mutual Dice (official: softmax(E)).
    """
    generator = torch.Generator().manual_seed(12)
    extra = [1 + 3 * torch.rand(2, 2, 8, 8, generator=generator) for _ in range(3)]
    output = _uml_output(generator, mutual_alphas=extra)
    output.side_logits = None
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    labels, epoch = torch.tensor([0, 1]), 30
    total, components = official_objective("uml2024")(output, mask, labels, epoch=epoch)

    one_hot = torch.stack([mask == c for c in range(2)], 1).float()  # (B, C, H, W)

    def log_dice(p):  # SDiceLoss: one Dice per class over batch and pixels, eps 1e-5
        inter = (p * one_hot).sum((0, 2, 3))
        dice = (2 * inter + 1e-5) / (p.sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) + 1e-5)
        return -torch.log(dice).mean()

    def kl_to_flat(alpha):  # KL(Dir(alpha) || Dir(1)) along dim 1, keepdim
        strength = alpha.sum(1, keepdim=True)
        k = alpha.shape[1]
        log_b = torch.lgamma(strength) - torch.lgamma(alpha).sum(1, keepdim=True)
        log_b_flat = -torch.lgamma(torch.tensor(float(k)))  # sum lgamma(1) - lgamma(K)
        digammas = (alpha - 1) * (torch.digamma(alpha) - torch.digamma(strength))
        return digammas.sum(1, keepdim=True) + log_b + log_b_flat

    def evidential(alpha, y):  # sum_k y_k (psi(S) - psi(alpha_k)) + lambda_t KL(alpha~), per item
        strength = alpha.sum(1, keepdim=True)
        ce = (y * (torch.digamma(strength) - torch.digamma(alpha))).sum(1, keepdim=True)
        tilde = (alpha - 1) * (1 - y) + 1
        return ce + min(1.0, epoch / 50) * kl_to_flat(tilde)

    z = output.seg_logits
    cross_entropy = -(torch.log_softmax(z, 1) * one_hot).sum(1).mean()
    seg = log_dice(torch.softmax(z, 1)) + cross_entropy
    mutual = 0
    for alpha in [output.pixel_alpha, *extra]:
        prob = alpha / alpha.sum(1, keepdim=True)
        mutual = mutual + log_dice(prob) + evidential(alpha, one_hot).mean()
    class_y = torch.stack([labels == c for c in range(2)], 1).float()
    cls = evidential(output.class_alpha, class_y).mean()
    torch.testing.assert_close(torch.tensor(components["seg"]), seg)
    torch.testing.assert_close(torch.tensor(components["mutual"]), mutual)
    torch.testing.assert_close(torch.tensor(components["cls"]), cls)
    torch.testing.assert_close(total, 0.5 * cls + 0.4 * seg + 0.1 * mutual)
    assert official_objective("uml").seg_ce_weight == 0.0
    assert official_objective("uml", seg_ce_weight=0.5).seg_ce_weight == 0.5
    with pytest.raises(ValueError, match="mutual_reduction must be one of"):
        uml_objective(output, mask, torch.tensor([0, 1]), 0, mutual_reduction="max")


def test_segmentation_loss_rejects_bad_input():
    mask = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="does not match seg_logits"):
        segmentation_loss(torch.zeros(1, 2, 4, 4), [torch.zeros(1, 3, 2, 2)], mask)
    with pytest.raises(ValueError, match="ce_weight"):
        segmentation_loss(torch.zeros(1, 2, 4, 4), None, mask, ce_weight=-1)
    with pytest.raises(ValueError, match="mask must have shape"):
        segmentation_loss(torch.zeros(1, 2, 4, 4), None, torch.zeros(1, 3, 4, dtype=torch.long))


def test_mutual_loss_hand_computed():
    # pixel 0: alpha (3, 1), target 0 -> p (.75, .25); pixel 1: alpha (1, 1), target 1 -> p (.5, .5)
    alpha = torch.tensor([[[[3.0, 1.0]], [[1.0, 1.0]]]])
    mask = torch.tensor([[[0, 1]]])
    # log-Dice: D_0 = 1.5 / 2.25 = 2/3, D_1 = 1 / 1.75 = 4/7 -> (-ln(2/3) - ln(4/7)) / 2
    log_dice = (-math.log(2 / 3) - math.log(4 / 7)) / 2
    # digamma: pixel 0 psi(4) - psi(3) = 1/3, pixel 1 psi(2) - psi(1) = 1 -> mean 2/3
    # KL: alpha~ = (1, 1) at both pixels -> 0
    for epoch in (0, 10, 100):
        assert mutual_loss(alpha, mask, epoch).item() == pytest.approx(log_dice + 2 / 3, abs=1e-4)


def test_mutual_loss_includes_annealed_kl():
    alpha = torch.tensor([[[[1.0]], [[3.0]]]])  # one pixel, target 0, misleading evidence 2
    mask = torch.tensor([[[0]]])
    kl = kl_to_uniform(alpha, mask).item()
    assert kl == pytest.approx(math.log(3) - 2 / 3, rel=1e-5)
    difference = mutual_loss(alpha, mask, 50, 50) - mutual_loss(alpha, mask, 0, 50)
    assert difference.item() == pytest.approx(kl, rel=1e-5)


def test_softmax_mutual_loss():
    logits = torch.zeros(1, 2, 1, 2)
    mask = torch.tensor([[[0, 1]]])
    # p = 0.5 everywhere: D_c = 1 / 2 -> log-Dice ln 2; CE ln 2
    assert softmax_mutual_loss(logits, mask).item() == pytest.approx(2 * math.log(2), abs=1e-4)


def _uml_output(generator, batch=2, classes=2, size=8, **overrides):
    fields = {
        "class_alpha": 1 + 3 * torch.rand(batch, 2, generator=generator),
        "pixel_alpha": 1 + 3 * torch.rand(batch, classes, size, size, generator=generator),
        "seg_logits": torch.randn(batch, classes, size, size, generator=generator),
        "side_logits": [torch.randn(batch, classes, size // 2, size // 2, generator=generator)],
        "mutual_alphas": [],
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_uml_objective_weights_the_terms():
    generator = torch.Generator().manual_seed(4)
    output = _uml_output(generator)
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    label = torch.tensor([0, 1])
    total, components = uml_objective(output, mask, label, epoch=10)
    cls = classification_loss(output.class_alpha, label, 10)
    seg = segmentation_loss(output.seg_logits, output.side_logits, mask)
    mutual = mutual_loss(output.pixel_alpha, mask, 10)
    torch.testing.assert_close(total, 0.5 * cls + 0.4 * seg + 0.1 * mutual)
    assert components["cls"] == pytest.approx(cls.item())
    assert components["seg"] == pytest.approx(seg.item())
    assert components["mutual"] == pytest.approx(mutual.item())
    assert components["total"] == pytest.approx(total.item())
    assert all(isinstance(value, float) for value in components.values())
    # the dataclass gives the same
    objective_total, _ = UMLObjective()(output, mask, label, 10)
    torch.testing.assert_close(objective_total, total)


def test_uml_objective_skips_missing_terms_without_renormalising():
    generator = torch.Generator().manual_seed(5)
    output = _uml_output(generator, class_alpha=None, pixel_alpha=None)
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    total, components = uml_objective(output, mask, None, epoch=0)
    assert set(components) == {"seg", "total"}
    assert components["total"] == pytest.approx(0.4 * components["seg"])
    classifier_only = SimpleNamespace(class_alpha=torch.tensor([[3.0, 1.0]]))
    total, components = uml_objective(classifier_only, None, torch.tensor([0]), epoch=0)
    assert total.item() == pytest.approx(0.5 / 3, rel=1e-5)


def test_uml_objective_softmax_heads():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 2, generator=generator)
    pixel_logits = torch.randn(2, 2, 8, 8, generator=generator)
    output = _uml_output(generator, class_alpha=None, pixel_alpha=None)
    output.class_logits, output.pixel_logits = logits, pixel_logits
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    label = torch.tensor([1, 0])
    _, components = uml_objective(output, mask, label, epoch=0)
    assert components["cls"] == pytest.approx(F.cross_entropy(logits, label).item())
    assert components["mutual"] == pytest.approx(softmax_mutual_loss(pixel_logits, mask).item())


def test_uml_objective_averages_mutual_alphas_at_other_levels():
    generator = torch.Generator().manual_seed(7)
    extra = 1 + torch.rand(2, 2, 4, 4, generator=generator)
    output = _uml_output(generator, mutual_alphas=[extra])
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    _, components = uml_objective(output, mask, torch.tensor([0, 1]), epoch=3)
    upsampled = F.interpolate(extra, size=(8, 8), mode="bilinear", align_corners=False)
    expected = (mutual_loss(output.pixel_alpha, mask, 3) + mutual_loss(upsampled, mask, 3)) / 2
    assert components["mutual"] == pytest.approx(expected.item(), rel=1e-6)


def test_uml_objective_gradients_are_finite():
    generator = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 2, 8, 8, generator=generator, requires_grad=True)
    class_logits = torch.randn(2, 2, generator=generator, requires_grad=True)
    output = _uml_output(
        generator,
        class_alpha=F.softplus(class_logits) + 1,
        pixel_alpha=F.softplus(logits) + 1,
        seg_logits=logits * 2,
    )
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    total, _ = uml_objective(output, mask, torch.tensor([0, 1]), epoch=60)
    total.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(class_logits.grad).all()


def test_uml_objective_rejects_bad_input():
    generator = torch.Generator().manual_seed(9)
    output = _uml_output(generator)
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    with pytest.raises(ValueError, match="label is None"):
        uml_objective(output, mask, None, 0)
    with pytest.raises(ValueError, match="mask is None"):
        uml_objective(output, None, torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="nothing to train"):
        uml_objective(SimpleNamespace(), mask, None, 0)
    with pytest.raises(ValueError, match="weights must be three"):
        uml_objective(output, mask, torch.tensor([0, 1]), 0, weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="unknown evidential loss kind"):
        uml_objective(output, mask, torch.tensor([0, 1]), 0, kind="focal")


def test_uml_objective_with_half_precision_outputs():
    generator = torch.Generator().manual_seed(10)
    output = _uml_output(generator)
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    label = torch.tensor([0, 1])
    half = SimpleNamespace(
        class_alpha=output.class_alpha.half(),
        pixel_alpha=output.pixel_alpha.half(),
        seg_logits=output.seg_logits.half(),
        side_logits=[side.half() for side in output.side_logits],
    )
    total_half, _ = uml_objective(half, mask, label, epoch=5)
    total, _ = uml_objective(output, mask, label, epoch=5)
    assert total_half.dtype == torch.float32
    torch.testing.assert_close(total_half, total, atol=5e-3, rtol=5e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(11)
    output = _uml_output(generator)
    mask = torch.randint(0, 2, (2, 8, 8), generator=generator)
    label = torch.tensor([0, 1])
    on_cuda = SimpleNamespace(
        class_alpha=output.class_alpha.cuda(),
        pixel_alpha=output.pixel_alpha.cuda(),
        seg_logits=output.seg_logits.cuda(),
        side_logits=[side.cuda() for side in output.side_logits],
    )
    total_cuda, _ = uml_objective(on_cuda, mask.cuda(), label.cuda(), epoch=5)
    total, _ = uml_objective(output, mask, label, epoch=5)
    torch.testing.assert_close(total_cuda.cpu(), total)
