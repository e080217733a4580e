"""umlkit.models.uml2024 against the authors' 2024 code (``models/uml_net.py``, ``models/modules.py``).

As in ``test_models_uml.py``, the official layers are written out with ``torch.nn.functional``;
umlkit's modules only lend their weights (in registration order) and are never called to build an
expected value.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transcription import Weights, batch_norm, randomize_norms

from umlkit.models import build_model
from umlkit.models.uml2024 import AttentionGateNavigator, UpConv

B, C = 2, 3


def _official_double_conv2d(weights, x, training=False, drops=None):
    """modules.py ``DoubleConv2d``: 3x3 conv (bias) -> BN -> ReLU, twice, then one Dropout2d(0.1)."""
    for _ in range(2):
        conv = weights.conv()
        assert conv.bias is not None
        x = F.relu(
            batch_norm(weights.norm(), F.conv2d(x, conv.weight, conv.bias, padding=1), training)
        )
    dropped = F.dropout2d(x, 0.1, training)
    if drops is not None:
        drops.append((dropped.flatten(2).abs().amax(-1) == 0) & (x.flatten(2).abs().amax(-1) > 0))
    return dropped


def _official_up_conv2d(weights, x, skip, training=False, drops=None):
    """modules.py ``UpConv2d``: Upsample(x2, bilinear, align_corners=True), DoubleConv2d(in, out),
    cat[x, skip] (the skip second, unlike 2023), DoubleConv2d(in, out)."""
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    x = _official_double_conv2d(weights, x, training, drops)
    return _official_double_conv2d(weights, torch.cat([x, skip], 1), training, drops)


@pytest.mark.parametrize("training", [False, True])
def test_up_step_follows_the_2024_order(training):
    torch.manual_seed(0)
    x, skip = torch.randn(4, 32, 3, 3), torch.randn(4, 16, 6, 6)
    step = randomize_norms(UpConv(32, 16, dropout=0.1)).train(training)
    torch.manual_seed(1)  # training: the same channel masks for umlkit's and the written-out step
    got = step(x, skip)
    torch.manual_seed(1)
    weights, drops = Weights(step), []
    expected = _official_up_conv2d(weights, x, skip, training, drops)
    weights.assert_used_up()
    torch.testing.assert_close(got, expected)
    assert len(drops) == 2  # one dropout per DoubleConv2d, at its end
    assert all(bool(d.any()) for d in drops) == training


def test_attention_gate_is_fed_the_full_resolution_mutual_feature():
    torch.manual_seed(0)
    gate = randomize_norms(AttentionGateNavigator(channels=8)).eval()
    x = torch.randn(B, 8, 4, 4)
    mutual, uncertainty = torch.randn(B, 2, 16, 16), torch.rand(B, 1, 16, 16)
    # modules.py UncertaintyNavigator with the inputs UNSegDecoder gives it: the full-resolution
    # mutual feature and uncertainty, nn.Upsample(scale_factor=1/4, bilinear, align_corners=True),
    # the feature's channels repeated to x's width
    m = F.interpolate(mutual, size=(4, 4), mode="bilinear", align_corners=True).repeat(1, 4, 1, 1)
    u = F.interpolate(uncertainty, size=(4, 4), mode="bilinear", align_corners=True)
    screened = x * torch.exp(-u)
    weights = Weights(gate)
    w_x, norm_x, w_m, norm_m = weights.conv(), weights.norm(), weights.conv(), weights.norm()
    w_psi, norm_psi = weights.conv(), weights.norm()
    weights.assert_used_up()
    inner = F.relu(
        batch_norm(norm_x, F.conv2d(screened, w_x.weight, w_x.bias), False)
        + batch_norm(norm_m, F.conv2d(m, w_m.weight, w_m.bias), False)
    )
    psi = torch.sigmoid(batch_norm(norm_psi, F.conv2d(inner, w_psi.weight, w_psi.bias), False))
    out, got_psi = gate(x, mutual, uncertainty)
    torch.testing.assert_close(got_psi, psi)
    torch.testing.assert_close(out, screened * psi)


def test_2024_mutual_levels_and_single_output():
    """uml_net.py / modules.py ``MutualFeatureDecoder`` by hand, level by level, and the wiring of
    the segmentation output, the gates' inputs and eta."""
    torch.manual_seed(0)
    model = randomize_norms(build_model("uml2024", num_seg_classes=C, width=4)).eval()
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen.setdefault(name, []).append((args, output))

        return hook

    for index, mixer in enumerate(model.mixers):
        mixer.register_forward_hook(keep(f"mixer{index}"))
    model.cls_encoder.register_forward_hook(keep("cls"))
    model.seg_encoder.register_forward_hook(keep("seg"))
    for gate in model.skip_navigators:
        gate.register_forward_hook(keep("gates"))
    model.class_head.register_forward_hook(keep("head"))
    out = model(torch.rand(B, 3, 16, 16))
    mutual = [seen[f"mixer{index}"][0][1] for index in range(4)]  # widths 4, 8, 16, 32

    # conv_adj_channel2..4: bare 1x1 convolutions of levels 2..4 (umlkit keeps each width)
    adjust = Weights(model.mutual_adjust)
    adjusted = [mutual[0]]
    for feature in mutual[1:]:
        conv = adjust.conv()
        assert conv.bias is None
        adjusted.append(F.conv2d(feature, conv.weight))
    adjust.assert_used_up()
    # up_conv4, up_conv3, up_conv2 from the bottom level; mut_info_list holds every level
    steps = Weights(model.mutual_steps)
    levels = [adjusted[3]]
    for skip in (adjusted[2], adjusted[1], adjusted[0]):
        levels.append(_official_up_conv2d(steps, levels[-1], skip))
    steps.assert_used_up()
    # out_conv4..1: BasicConv2d(c, c/2) -> BasicConv2d(c/2, C), softplus, alpha = E + 1, u = C/S
    heads = Weights(model.mutual_heads)
    pairs = {}
    for _ in range(4):
        hidden, last = heads.conv(), heads.conv()
        assert hidden.bias is None and last.bias is None
        assert last.weight.shape[:2] == (C, hidden.weight.shape[1] // 2)
        pairs[hidden.weight.shape[1]] = (hidden, last)
    heads.assert_used_up()
    alphas, uncertainties = [], []
    for level in levels:  # strides 8, 4, 2, 1
        hidden, last = pairs[level.shape[1]]
        alpha = F.softplus(F.conv2d(F.conv2d(level, hidden.weight), last.weight)) + 1
        alphas.append(alpha)
        uncertainties.append(C / alpha.sum(1, keepdim=True))
    # the full-resolution level is the pixel Dirichlet; the coarser alphas go up to the input's
    # size by nn.Upsample(scale_factor=2**i, bilinear, align_corners=True), as uml_net.py does
    torch.testing.assert_close(out.pixel_alpha, alphas[3])
    torch.testing.assert_close(out.pixel_uncertainty, uncertainties[3])
    assert len(out.mutual_alphas) == 3
    for got, alpha, factor in zip(out.mutual_alphas, alphas[:3], (8, 4, 2), strict=True):
        expected = F.interpolate(alpha, scale_factor=factor, mode="bilinear", align_corners=True)
        torch.testing.assert_close(got, expected)

    # UNSegDecoder: every gate gets the full-resolution mutual feature (mut_info_list[0]) and
    # uncertainty; its skip is the segmentation feature, 1x1-adjusted above level 1
    seg = seen["seg"][0][1]
    seg_adjust = Weights(model.seg_adjust)
    skips = [seg[0], *(F.conv2d(f, seg_adjust.conv().weight) for f in seg[1:3])]
    assert len(seen["gates"]) == 3
    for (args, _), skip in zip(seen["gates"], skips, strict=True):
        torch.testing.assert_close(args[0], skip)
        torch.testing.assert_close(args[1], levels[3])
        torch.testing.assert_close(args[2], uncertainties[3])
    # one output: a bare 1x1 convolution of the decoder's last feature, no side outputs
    assert out.side_logits is None and model.seg_head.bias is None
    torch.testing.assert_close(out.seg_logits, F.conv2d(out.features, model.seg_head.weight))
    # UIClsDecoder reads the classification feature alone; eta is the last feature, down8
    head_input, _, eta = seen["head"][0][0]
    torch.testing.assert_close(head_input, seen["cls"][0][1][-1])
    down8 = F.interpolate(out.features, size=(2, 2), mode="bilinear", align_corners=True)
    torch.testing.assert_close(eta, down8)
    # its four separable blocks end in ReLU -> Dropout2d(0.1); its DoubleConv2d drops once, last
    layers = [m for m in model.class_head.modules() if not list(m.children())]
    drops = [i for i, m in enumerate(layers) if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 4 and all(isinstance(layers[i - 1], nn.ReLU) for i in drops)
    assert all(layers[i].p == 0.1 for i in drops)
    layers = [m for m in model.instructor.modules() if not list(m.children())]
    assert [isinstance(m, nn.Dropout2d) for m in layers] == [False] * 6 + [True]
    assert layers[-1].p == 0.1
