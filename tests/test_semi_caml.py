"""CAML pieces: sharpening, mutual consistency, CMA, the memory, the queries and the OCC loss,
the two networks, the feature dropout, the total loss and what the loop feeds it.

The "transcription" tests write the official computation (Herschel555/CAML, described in the
module docstring of umlkit.semi.caml), or umlkit's declared deviation from it (docs/fidelity.md),
out again in a few lines of tensor algebra and compare.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from umlkit.semi import loop
from umlkit.semi.base import Progress
from umlkit.semi.caml import (
    CAML,
    CrossSampleMutualAttention,
    mutual_consistency_loss,
    sharpen,
)
from umlkit.semi.loop import SemiConfig, fit_semi


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


# --------------------------------------------------------- the networks, dropout, the total
# umlkit's two networks written out with torch.nn.functional: the U-Net of umlkit.models.blocks
# (two 3x3 conv-BN-ReLU per level, 2x2 max-pooling, concatenated skips), not the official V-Net
# (strided-convolution downsampling, additive skips; docs/fidelity.md). The modules only lend
# their weights, in registration order.


class _Weights:
    """The Conv2d, ConvTranspose2d and BatchNorm2d layers of a module, in registration order."""

    def __init__(self, module):
        self.convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        self.transposed = [m for m in module.modules() if isinstance(m, nn.ConvTranspose2d)]
        self.norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]

    def assert_used_up(self):
        assert not (self.convs or self.transposed or self.norms)


def _conv_block(weights, x, training):
    """(3x3 convolution without bias -> BatchNorm -> ReLU) twice."""
    for _ in range(2):
        conv, norm = weights.convs.pop(0), weights.norms.pop(0)
        assert conv.bias is None
        x = F.conv2d(x, conv.weight, padding=1)
        if training:
            x = F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
        else:
            stats = (norm.running_mean, norm.running_var)
            x = F.batch_norm(x, *stats, norm.weight, norm.bias, False, 0.0, norm.eps)
        x = F.relu(x)
    return x


def _encode(net, x, training):
    weights = _Weights(net.encoder)
    features = [_conv_block(weights, x, training)]
    for _ in range(3):
        features.append(_conv_block(weights, F.max_pool2d(features[-1], 2), training))
    weights.assert_used_up()
    return features


def _decode(net, features, training):
    """Upsample to the skip's width, cat[upsampled, skip], conv block; v: 2x2 transposed conv,
    a: 1x1 conv then bilinear x2 (align_corners=False), all without bias."""
    weights = _Weights(net.decoder)
    x = features[-1]
    for skip in reversed(features[:-1]):
        if weights.transposed:  # model v
            x = F.conv_transpose2d(x, weights.transposed.pop(0).weight, stride=2)
        else:  # model a
            reduce = weights.convs.pop(0)
            assert reduce.bias is None and reduce.weight.shape[2:] == (1, 1)
            x = F.interpolate(F.conv2d(x, reduce.weight), scale_factor=2, mode="bilinear")
        x = _conv_block(weights, torch.cat([x, skip], 1), training)
    weights.assert_used_up()
    return x


def _official_cma(cma):
    """CMA with stock post-norm transformer layers holding umlkit's weights, in the official
    layout: intra-sample over (h*w, B, C), then inter-sample over (B, h*w, C). Built before any
    seeding (building layers draws random numbers)."""
    layers = []
    for trained in (cma.intra_sample, cma.inter_sample):
        channels = trained.linear1.in_features
        layer = nn.TransformerEncoderLayer(channels, 4, 4 * channels, dropout=0.0)
        layer.load_state_dict(trained.state_dict())
        layers.append(layer)

    def attend(feature):
        batch, channels, height, width = feature.shape
        tokens = layers[0](feature.flatten(2).permute(2, 0, 1)).permute(1, 0, 2)
        return layers[1](tokens).permute(0, 2, 1).reshape(batch, channels, height, width)

    return attend


def _forward_by_hand(net, images, labeled, training=True, p=0.0, cma=None, joint=False):
    """CAML's training pass by hand: encoder and decoder per part (labelled, unlabelled) unless
    ``joint``, CMA on the whole batch, Dropout2d(p) on the deepest and the last decoder feature.

    Returns (logits, last feature, which (image, channel) maps each dropout zeroed).
    """
    parts = [torch.ones_like(labeled)] if joint else [labeled, ~labeled]
    encoded = [_encode(net, images[part], training) for part in parts]
    deepest = torch.zeros(len(images), *encoded[0][-1].shape[1:])
    for part, features in zip(parts, encoded, strict=True):
        deepest[part] = features[-1]
    if cma is not None and training:
        deepest = cma(deepest)
    drops = []

    def drop(x):
        dropped = F.dropout2d(x, p, training)
        drops.append((dropped.flatten(2).abs().amax(-1) == 0) & (x.flatten(2).abs().amax(-1) > 0))
        return dropped

    deepest = drop(deepest)
    feature = torch.zeros(len(images), net.head.in_channels, *images.shape[2:])
    for part, features in zip(parts, encoded, strict=True):
        features[-1] = deepest[part]
        feature[part] = drop(_decode(net, features, training))
    logits = F.conv2d(feature, net.head.weight, net.head.bias)
    return logits, feature, drops


def test_caml_networks_are_umlkit_unets_with_labelled_and_unlabelled_images_normalised_apart():
    torch.manual_seed(0)
    caml = CAML(in_channels=1, num_classes=2, width=4, feature_dropout=0.0, cma_dropout=0.0)
    caml.train()
    images = torch.rand(4, 1, 16, 16)
    labeled = torch.tensor([True, False, True, False])
    for net, cma in ((caml.model_v, None), (caml.model_a, caml.model_a.bottleneck)):
        out = caml._forward(net, images, labeled)
        official_cma = None if cma is None else _official_cma(cma)
        logits, feature, _ = _forward_by_hand(net, images, labeled, cma=official_cma)
        torch.testing.assert_close(out.seg_logits, logits)
        torch.testing.assert_close(out.features, feature)
        # one joint pass (the official forward) normalises differently: the deviation is real
        joint, _, _ = _forward_by_hand(net, images, labeled, cma=official_cma, joint=True)
        assert (joint - logits).abs().max() > 1e-3
    assert isinstance(caml.model_v.decoder.steps[0].up, nn.ConvTranspose2d)


def test_caml_feature_dropout_hits_the_bottleneck_and_the_last_decoder_feature_in_training_only():
    torch.manual_seed(0)
    caml = CAML(in_channels=1, num_classes=2, width=4, feature_dropout=0.5, cma_dropout=0.0)
    assert isinstance(caml.feature_dropout, nn.Dropout2d) and caml.feature_dropout.p == 0.5
    images = torch.rand(4, 1, 16, 16)
    labeled = torch.tensor([True, True, False, False])
    for net, cma in ((caml.model_v, None), (caml.model_a, caml.model_a.bottleneck)):
        official_cma = None if cma is None else _official_cma(cma)
        caml.train()
        torch.manual_seed(1)  # the same channel masks for umlkit's pass and the one by hand
        out = caml._forward(net, images, labeled)
        torch.manual_seed(1)
        logits, feature, drops = _forward_by_hand(net, images, labeled, p=0.5, cma=official_cma)
        torch.testing.assert_close(out.seg_logits, logits)
        torch.testing.assert_close(out.features, feature)
        # the deepest feature of the batch, then the last feature of each part, lost channels
        assert len(drops) == 3 and all(bool(d.any()) for d in drops)
        caml.eval()  # no dropout (and no CMA) at evaluation
        logits, feature, drops = _forward_by_hand(net, images, labeled, training=False, p=0.5)
        out = caml._forward(net, images, labeled)
        torch.testing.assert_close(out.seg_logits, logits)
        torch.testing.assert_close(out.features, feature)
        assert not any(bool(d.any()) for d in drops)
        if net is caml.test_model:  # model v, evaluated without the feature dropout
            torch.testing.assert_close(caml.test_model(images).seg_logits, logits)


def test_caml_total_is_half_the_supervised_sum_plus_the_ramped_consistency_and_occ():
    """train_caml.py: loss = lamda * loss_s + lambda_c * loss_c + lambda_o * loss_o, lamda = 0.5,
    loss_s summed over the two models, lambda_c = r(t), lambda_o = 0.05 r(t).

    L_sup (umlkit's: soft Dice over all classes + cross-entropy) and L_c are written out here from
    the two networks' logits; L_o is taken from the returned terms (its value is checked by
    test_omni_correlation_transcribes_the_official_step).
    """
    torch.manual_seed(0)
    caml = CAML(in_channels=1, num_classes=2, width=4, memory_samples_per_class=4).train()
    # keys of both classes from earlier batches (slots of other images), so that L_o is not 0
    caml.memory.replace(100, torch.randn(6, 32), torch.tensor([0, 0, 0, 1, 1, 1]))
    caml.memory.replace(101, torch.randn(6, 32), torch.tensor([0, 1, 0, 1, 0, 1]))
    logits = {"v": [], "a": []}
    caml.model_v.head.register_forward_hook(lambda m, args, out: logits["v"].append(out))
    caml.model_a.head.register_forward_hook(lambda m, args, out: logits["a"].append(out))
    images = torch.rand(4, 1, 16, 16)
    masks = torch.zeros(4, 16, 16, dtype=torch.long)
    masks[:, 4:11, 3:12] = 1
    labeled = torch.tensor([True, True, False, False])  # labelled first: the parts in batch order
    ramp = 0.7
    loss, terms = caml.training_loss(
        images, masks, labeled, Progress(3, 1, ramp), indices=torch.tensor([0, 1, 2, 3])
    )
    prob_v, prob_a = (torch.cat(logits[k]).softmax(1) for k in ("v", "a"))
    one_hot = F.one_hot(masks[:2], 2).permute(0, 3, 1, 2).float()

    def supervised(z):
        p = z[:2].softmax(1)
        dice = (2 * (p * one_hot).sum((0, 2, 3)) + 1e-5) / (
            p.sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) + 1e-5
        )
        cross_entropy = -(z[:2].log_softmax(1) * one_hot).sum(1).mean()
        return (1 - dice).mean() + cross_entropy

    l_sup = 0.5 * (supervised(torch.cat(logits["v"])) + supervised(torch.cat(logits["a"])))
    l_c = ((prob_v - official_sharpening(prob_a)) ** 2).mean() + (
        (prob_a - official_sharpening(prob_v)) ** 2
    ).mean()
    occ = torch.tensor(terms["occ"])
    assert occ > 0.1  # the 0.05 weight is exercised
    torch.testing.assert_close(torch.tensor(terms["supervised"]), l_sup)
    torch.testing.assert_close(torch.tensor(terms["consistency"]), l_c)
    torch.testing.assert_close(loss, l_sup + ramp * l_c + 0.05 * ramp * occ)


class _Noise(Dataset):
    """Tiny images of uniform noise: any flip, turn or crop of one would change its pixels."""

    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.items = [
            {
                "image": torch.rand(3, 16, 16, generator=generator),
                "mask": (torch.rand(16, 16, generator=generator) > 0.6).long(),
                "label": torch.tensor(0),
                "id": str(index),
            }
            for index in range(n)
        ]
        self.ids = [item["id"] for item in self.items]
        self.num_seg_classes = 2

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_the_loop_gives_caml_the_images_as_loaded_in_float32(monkeypatch):
    """Official train_caml.py: RandomRotFlip and RandomCrop on every volume, float32. umlkit's
    semi-supervised loop augments nothing and runs no autocast: each step sees the dataset's
    images unchanged (copied, so compared exactly)."""
    train = _Noise(8, seed=0)
    torch.manual_seed(0)
    caml = CAML(in_channels=3, num_classes=2, width=4)
    seen = []

    def record(images, masks, labeled, progress, indices=None):
        autocast = torch.is_autocast_enabled(images.device.type)
        seen.append((images.clone(), masks.clone(), labeled.clone(), indices.clone(), autocast))
        return caml.model_v(images).seg_logits.mean(), {}

    monkeypatch.setattr(caml, "training_loss", record)
    monkeypatch.setattr(loop, "build_method", lambda *args, **kwargs: caml)
    config = SemiConfig(
        method="caml",
        label_fraction=0.25,
        image_size=16,
        width=4,
        epochs=2,
        labeled_batch_size=2,
        unlabeled_batch_size=2,
    )
    fit_semi(config, progress=False, data=(train, _Noise(4, seed=1)))
    assert len(seen) == 2
    for images, masks, labeled, indices, autocast in seen:
        assert not autocast and images.dtype == torch.float32
        assert labeled.tolist() == [True, True, False, False]
        for image, mask, is_labeled, index in zip(images, masks, labeled, indices, strict=True):
            assert torch.equal(image, train.items[int(index)]["image"])
            if is_labeled:
                assert torch.equal(mask, train.items[int(index)]["mask"])
