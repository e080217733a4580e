"""CAML pieces: sharpening, mutual consistency, CMA, the memory, the queries and the OCC loss.

The "transcription" tests write the official computation (Herschel555/CAML, described in the
module docstring of umlkit.semi.caml) out again in a few lines of tensor algebra and compare.
"""

import copy

import pytest
import torch
from torch import nn

from umlkit.semi.caml import (
    CAML,
    CrossSampleMutualAttention,
    mutual_consistency_loss,
    sharpen,
)


def official_sharpening(p, temperature=0.1):
    t = 1 / temperature
    return p**t / (p**t + (1 - p) ** t)


def official_occ(query_v, query_a, memory, temperature=0.1):
    corr_v = torch.softmax(query_v @ memory.T / temperature, dim=1)
    corr_a = torch.softmax(query_a @ memory.T / temperature, dim=1)
    return torch.sum(torch.sum(-corr_a * torch.log(corr_v + 1e-8), dim=1)) / len(corr_a)


def official_head(head, rows):
    """Linear -> BatchNorm1d with running statistics (eval) -> ReLU -> Linear, by hand."""
    first, norm, _, last = head.layers
    hidden = rows @ first.weight.T + first.bias
    hidden = (hidden - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    hidden = torch.relu(hidden * norm.weight + norm.bias)
    return hidden @ last.weight.T + last.bias


# ---------------------------------------------------------------------------- sharpening, L_c
def test_sharpen_hand_computed():
    p = torch.tensor([0.6, 0.5, 0.0, 1.0])
    # T = 0.5: 0.6^2 / (0.6^2 + 0.4^2) = 0.36 / 0.52
    assert sharpen(p, 0.5)[0].item() == pytest.approx(0.36 / 0.52)
    # T = 0.1: 0.6^10 / (0.6^10 + 0.4^10)
    expected = 0.6**10 / (0.6**10 + 0.4**10)
    assert torch.allclose(sharpen(p, 0.1), torch.tensor([expected, 0.5, 0.0, 1.0]))


def test_sharpen_keeps_binary_pairs_summing_to_one_and_has_finite_gradients_at_0_and_1():
    p = torch.tensor([0.2, 0.7, 0.93])
    assert torch.allclose(sharpen(p) + sharpen(1 - p), torch.ones(3))
    edge = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    (grad,) = torch.autograd.grad(sharpen(edge).sum(), edge)
    assert torch.isfinite(grad).all() and grad[:2].abs().max() < 1e-6


def test_sharpen_rejects_logits_and_bad_temperature():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sharpen(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="temperature"):
        sharpen(torch.tensor([0.5]), 0.0)


def test_mutual_consistency_hand_computed():
    prob_v = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1).requires_grad_()
    prob_a = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1).requires_grad_()
    s6 = 0.6**10 / (0.6**10 + 0.4**10)
    # MSE(p_v, S(p_a)) = mean((0.6-0.5)^2, (0.4-0.5)^2); MSE(p_a, S(p_v)) = mean((0.5-s6)^2, ...)
    expected = 0.01 + (0.5 - s6) ** 2
    loss = mutual_consistency_loss(prob_v, prob_a)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_mutual_consistency_transcribes_the_official_value_and_gradient():
    """Official: loss_c = mse(p_v, sharpen(p_a)) + mse(p_a, sharpen(p_v)), nothing detached."""
    torch.manual_seed(0)
    logits_v = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    logits_a = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    prob_v, prob_a = logits_v.softmax(1), logits_a.softmax(1)
    ours = mutual_consistency_loss(prob_v, prob_a)
    official = ((prob_v - official_sharpening(prob_a)) ** 2).mean() + (
        (prob_a - official_sharpening(prob_v)) ** 2
    ).mean()
    assert ours.item() == pytest.approx(official.item(), rel=1e-10)
    grads = torch.autograd.grad(ours, (logits_v, logits_a), retain_graph=True)
    expected = torch.autograd.grad(official, (logits_v, logits_a), retain_graph=True)
    for grad, reference in zip(grads, expected, strict=True):
        assert torch.allclose(grad, reference, rtol=1e-8, atol=1e-12)
    # the gradient really flows through the sharpened targets: the stop-gradient form differs
    detached = mutual_consistency_loss(prob_v, prob_a, detach_targets=True)
    stop = ((prob_v - official_sharpening(prob_a).detach()) ** 2).mean() + (
        (prob_a - official_sharpening(prob_v).detach()) ** 2
    ).mean()
    grad_detached = torch.autograd.grad(detached, logits_v, retain_graph=True)[0]
    assert torch.allclose(grad_detached, torch.autograd.grad(stop, logits_v)[0])
    assert not torch.allclose(grad_detached, grads[0])


def test_mutual_consistency_rejects_bad_inputs():
    with pytest.raises(ValueError, match="differ"):
        mutual_consistency_loss(torch.rand(1, 2, 2, 2), torch.rand(1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mutual_consistency_loss(torch.randn(1, 2, 2, 2) * 5, torch.rand(1, 2, 2, 2))


# ------------------------------------------------------------------------------------- CMA
def test_cma_defaults_are_the_official_layers():
    cma = CrossSampleMutualAttention(channels=16)
    for layer in (cma.intra_sample, cma.inter_sample):
        assert layer.norm_first is False  # post-norm
        assert layer.self_attn.num_heads == 4
        assert layer.linear1.out_features == 4 * 16
        assert layer.dropout.p == 0.5 and layer.self_attn.dropout == 0.5
        assert layer.activation_relu_or_gelu == 1  # ReLU


def test_cma_transcribes_two_official_transformer_layers():
    """Official: intra over (h*w, B, C), then inter over (B, h*w, C), both batch_first=False."""
    torch.manual_seed(0)
    channels = 8
    cma = CrossSampleMutualAttention(channels, num_heads=4, dropout=0.0).train()
    intra, inter = (
        nn.TransformerEncoderLayer(channels, 4, dim_feedforward=4 * channels, dropout=0.0)
        for _ in range(2)
    )
    intra.load_state_dict(cma.intra_sample.state_dict())
    inter.load_state_dict(cma.inter_sample.state_dict())
    feature = torch.randn(3, channels, 2, 4)
    batch, _, height, width = feature.shape
    tokens = feature.flatten(2).permute(2, 0, 1)  # (h*w, B, C): the sequence is the pixels
    tokens = intra(tokens).permute(1, 0, 2)  # (B, h*w, C): the sequence is the batch
    expected = inter(tokens).permute(0, 2, 1).reshape(batch, channels, height, width)
    assert torch.allclose(cma(feature), expected, atol=1e-5)


def test_cma_mixes_samples_in_training_and_is_the_identity_at_eval():
    torch.manual_seed(0)
    cma = CrossSampleMutualAttention(channels=8, num_heads=2, dropout=0.0)
    feature = torch.randn(3, 8, 2, 4)
    out = cma(feature)
    assert out.shape == feature.shape and not torch.allclose(out, feature)
    other = feature.clone()
    other[2] = torch.randn(8, 2, 4)  # changing sample 2 changes the output of sample 0
    assert not torch.allclose(cma(other)[0], out[0])
    cma.eval()
    assert torch.equal(cma(feature), feature)


def test_cma_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divide"):
        CrossSampleMutualAttention(channels=6, num_heads=4)


def tiny_caml(**options):
    torch.manual_seed(0)
    caml = CAML(in_channels=1, num_classes=2, width=4, **options)
    for head in (caml.projection_v, caml.projection_a):  # running statistics unlike a batch's
        norm = head.layers[1]
        norm.running_mean.copy_(torch.randn(norm.num_features))
        norm.running_var.copy_(torch.rand(norm.num_features) + 0.5)
    return caml.train()


def test_memory_update_stores_pixels_both_models_get_right_with_eval_mode_projections():
    caml = tiny_caml()
    rows_v, rows_a = torch.randn(2, 3, 3, 4), torch.randn(2, 3, 3, 4)
    target = torch.randint(0, 2, (2, 3, 3))
    class_v, class_a = target.clone(), target.clone()
    class_v[0, 0, 0] = 1 - target[0, 0, 0]  # v wrong here
    class_a[1, 2, 1] = 1 - target[1, 2, 1]  # a wrong here
    class_a[0, 1, 1] = class_v[0, 1, 1] = 1 - target[0, 1, 1]  # both wrong (they agree)
    stats = [head.layers[1].running_mean.clone() for head in (caml.projection_v, caml.projection_a)]
    caml._update_memory(rows_v, rows_a, class_v, class_a, target, [12, 5])
    assert caml.projection_v.training and caml.projection_a.training  # modes restored
    for head, before in zip((caml.projection_v, caml.projection_a), stats, strict=True):
        assert torch.equal(head.layers[1].running_mean, before)  # eval mode: no update
    correct = (class_v == target) & (class_a == target)
    for position, (slot, count) in enumerate([(12, 7), (5, 8)]):
        mask = correct[position]
        expected = 0.5 * (
            official_head(caml.projection_v, rows_v[position][mask])
            + official_head(caml.projection_a, rows_a[position][mask])
        )
        stored, labels = caml.memory.slots[slot]
        assert len(stored) == int(mask.sum()) == count
        assert torch.allclose(stored, expected, atol=1e-6) and not stored.requires_grad
        assert torch.equal(labels, target[position][mask])
    caml._update_memory(rows_v[:1], rows_a[:1], target[:1], target[:1], target[:1], [5])
    assert len(caml.memory.slots[5][0]) == 9  # replaced, not appended


def test_omni_correlation_transcribes_the_official_step():
    """Memory update, keys, queries and L_o of one step against the official recipe by hand.

    Each class has exactly ``memory_samples_per_class`` correct labeled pixels, so the sampled
    keys are all stored entries (in some order, to which the loss is blind).
    """
    caml = tiny_caml(memory_samples_per_class=8, max_query_pixels_per_class=3)
    official = copy.deepcopy(caml)
    torch.manual_seed(1)
    feature_v, feature_a = torch.randn(3, 4, 4, 4), torch.randn(3, 4, 4, 4)
    prob_v = torch.softmax(3 * torch.randn(3, 2, 4, 4), dim=1)
    prob_a = torch.softmax(3 * torch.randn(3, 2, 4, 4), dim=1)
    labeled = torch.tensor([False, True, False])
    masks = torch.full((3, 4, 4), -1)
    masks[1] = (torch.arange(16) % 2).view(4, 4)  # 8 pixels of each class
    prob_v[1] = prob_a[1] = nn.functional.one_hot(masks[1], 2).permute(2, 0, 1).float()
    feature_v.requires_grad_(), feature_a.requires_grad_()
    loss = caml._omni_correlation(
        feature_v, feature_a, prob_v, prob_a, masks, labeled, torch.tensor([0, 6, 0])
    )

    # the official step, by hand (channels last for both models)
    rows_v, rows_a = feature_v.permute(0, 2, 3, 1), feature_a.permute(0, 2, 3, 1)
    keys = (
        0.5
        * (
            official_head(official.projection_v, rows_v[1].reshape(-1, 4))
            + official_head(official.projection_a, rows_a[1].reshape(-1, 4))
        ).detach()
    )
    unlabeled = torch.tensor([0, 2])
    conf_v, class_v = prob_v[unlabeled].max(1)
    agree = class_v == prob_a[unlabeled].argmax(1)
    query_v = official.prediction_v(official.projection_v(rows_v[unlabeled][agree]))
    query_a = official.prediction_a(official.projection_a(rows_a[unlabeled][agree]))
    rows = []
    for cls in range(2):
        members = torch.nonzero(class_v[agree] == cls)[:, 0]
        if len(members) > 1:
            order = torch.sort(conf_v[agree][members], descending=True, stable=True).indices
            rows.append(members[order[:3]])
    rows = torch.cat(rows)
    expected = official_occ(query_v[rows], query_a[rows], keys)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    grads = torch.autograd.grad(loss, (feature_v, feature_a), retain_graph=True)
    references = torch.autograd.grad(expected, (feature_v, feature_a))
    for grad, reference in zip(grads, references, strict=True):
        assert torch.allclose(grad, reference, atol=1e-5) and grad.abs().sum() > 0
    assert sorted(caml.memory.slots) == [6]


def test_caml_defaults_follow_the_official_code():
    caml = CAML(num_classes=2, width=16)
    assert caml.memory_samples_per_class == 256 and caml.occ_weight == 0.05
    assert caml.sharpen_temperature == caml.occ_temperature == 0.1
    assert caml.feature_dropout.p == 0.5
    head = caml.projection_v.layers
    assert (head[0].in_features, head[0].out_features, head[3].out_features) == (16, 32, 32)
    assert isinstance(head[1], nn.BatchNorm1d) and isinstance(head[2], nn.ReLU)
    assert caml.prediction_a.layers[0].in_features == 32
    assert caml.model_a.bottleneck.intra_sample.linear1.out_features == 4 * 128
    with pytest.raises(ValueError, match="at least 2"):
        CAML(memory_samples_per_class=1)
