"""umlkit.models.uml against the official computations, written out independently.

Each test restates what the authors' code computes (KarryRen/UML, ``models/modules.py``) in a few
lines of tensor algebra — per-pixel convolutions, explicit concatenations and reshapes — and
compares it with umlkit's block on random input; umlkit's modules only lend their weights and are
never called to build an expected value. ``docs/fidelity.md`` maps every block to these tests,
including the training precision it declares (``test_uml_trains_under_bf16_autocast_on_cuda_only``).
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transcription import Weights, batch_norm, randomize_norms

from umlkit.config import TrainConfig
from umlkit.losses import official_objective
from umlkit.models import build_model
from umlkit.models.uml import (
    ClassifierHead,
    FeatureMixer,
    MutualDecoder,
    PolarizedSelfAttention,
    UncertaintyInstructor,
    UncertaintyNavigator,
    UpConcat,
    channel_shuffle,
    resize,
)
from umlkit.optim import make_optimizer
from umlkit.profiles import get_settings
from umlkit.train import train_one_epoch

B, C = 2, 3


def _pixelwise(conv, t):
    """A 1x1 convolution of every pixel with an ``nn.Conv2d``'s weights, by the stock functional."""
    return F.conv2d(t, conv.weight, conv.bias)


def _official_psa(psa, x):
    """modules.py ``PolarizedSelfAttention``: every conv on every pixel, sequential branches."""
    q = psa.channel_query(x).flatten(2).softmax(-1)  # (B, 1, HW): softmax over the pixels
    v = _pixelwise(psa.channel_value, x).flatten(2)  # (B, C/2, HW)
    z = torch.bmm(v, q.transpose(1, 2)).squeeze(-1)  # (B, C/2)
    channel = torch.sigmoid(
        psa.channel_norm(_pixelwise(psa.channel_up, z[:, :, None, None]).flatten(1))
    )
    x1 = x * channel[:, :, None, None]
    q2 = _pixelwise(psa.spatial_query, x1).mean((2, 3))  # AvgPool(W_q' X'), (B, C/2)
    v2 = _pixelwise(psa.spatial_value, x1).flatten(2)  # (B, C/2, HW)
    spatial = torch.sigmoid(torch.bmm(q2.unsqueeze(1), v2)).view(x.shape[0], 1, *x.shape[2:])
    return spatial * x1 + x1  # X' + A X', no residual of the raw input


def test_psa_equals_the_official_per_pixel_computation():
    torch.manual_seed(0)
    psa = PolarizedSelfAttention(8)
    x = torch.randn(B, 8, 5, 4, requires_grad=True)
    expected = _official_psa(psa, x)
    got = psa(x)
    torch.testing.assert_close(got, expected)
    grad_expected = torch.autograd.grad(expected.square().sum(), x)[0]
    grad_got = torch.autograd.grad(got.square().sum(), x)[0]
    torch.testing.assert_close(grad_got, grad_expected)


def test_channel_shuffle_is_the_official_reshape_permute():
    x = torch.randn(B, 16, 3, 3)
    # modules.py channel_shuffle(x, 4): view (b, C/4, 4, h, w), swap the two, flatten back.
    official = x.view(B, 16 // 4, 4, 3, 3).transpose(1, 2).reshape(B, 16, 3, 3)
    torch.testing.assert_close(channel_shuffle(x, groups=16 // 4), official)
    # output channel j reads input channel 4 * (j mod C/4) + j // (C/4)
    index = [4 * (j % 4) + j // 4 for j in range(16)]
    torch.testing.assert_close(channel_shuffle(x, groups=4), x[:, index])
    with pytest.raises(ValueError, match="cannot be shuffled"):
        channel_shuffle(torch.randn(1, 6, 2, 2), groups=4)


@pytest.mark.parametrize("out_channels", [5, None])
def test_mixer_concatenates_classification_first_and_shuffles(out_channels):
    torch.manual_seed(0)
    mixer = FeatureMixer(channels=6, mixer_width=4, out_channels=out_channels)
    seg, cls = torch.randn(B, 6, 4, 4), torch.randn(B, 6, 4, 4)
    mixed = torch.cat([mixer.cls_projection(cls), mixer.seg_projection(seg)], 1)  # (B, 8, ..)
    shuffled = mixed.view(B, 2, 4, 4, 4).transpose(1, 2).reshape(B, 8, 4, 4)
    expected = _official_psa(mixer.attention, shuffled)
    if out_channels is not None:
        expected = F.conv2d(expected, mixer.output.weight)
    torch.testing.assert_close(mixer(seg, cls), expected)
    assert mixer.cls_projection.bias is None and mixer.seg_projection.bias is None
    assert mixer.out_channels == (out_channels or 8)


def test_navigator_is_the_official_concat_module():
    torch.manual_seed(0)
    navigator = UncertaintyNavigator(channels=6, num_seg_classes=C, dropout=0.1).eval()
    x, side = torch.randn(B, 6, 5, 4), torch.randn(B, C, 5, 4)
    evidence, uncertainty = 3 * torch.rand(B, C, 5, 4), torch.rand(B, 1, 5, 4)
    reliable = (side + evidence) * torch.exp(-uncertainty)  # raw logits + E, screened
    embed = navigator.embed
    embedded = F.relu(embed[1](F.conv2d(reliable, embed[0].weight)))
    expected = F.conv2d(torch.cat([x, embedded], 1), navigator.fuse.weight)
    got, got_reliable = navigator(x, side, evidence, uncertainty)
    torch.testing.assert_close(got_reliable, reliable)
    torch.testing.assert_close(got, expected)
    assert navigator.fuse.bias is None and embed[0].bias is None


# ------------------------------------------------------------------ decoders, heads, dropout
# The official layers below are written with torch.nn.functional alone. umlkit's modules serve only
# as containers of the weights (handed out in the order they were registered: transcription.Weights); none
# of their forward methods is called to build an expected value.


def _official_double_conv(weights, x, training=False, p=0.1, drops=None):
    """convs.py ``DoubleConv``: (3x3 conv with bias -> BN -> ReLU -> Dropout2d(0.1)) twice.

    ``drops`` collects, per dropout, which (image, channel) maps it zeroed.
    """
    for _ in range(2):
        conv = weights.conv()
        assert conv.bias is not None  # nn.Conv2d's default bias
        x = F.relu(
            batch_norm(weights.norm(), F.conv2d(x, conv.weight, conv.bias, padding=1), training)
        )
        dropped = F.dropout2d(x, p, training)
        if drops is not None:
            drops.append(
                (dropped.flatten(2).abs().amax(-1) == 0) & (x.flatten(2).abs().amax(-1) > 0)
            )
        x = dropped
    return x


def _official_unet_up(weights, x, skip, training=False, drops=None):
    """convs.py ``UNet_Up``: nn.Upsample(x2, bilinear, align_corners=True), DoubleConv, cat[skip, x]."""
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    return torch.cat([skip, _official_double_conv(weights, x, training, drops=drops)], 1)


def test_up_step_follows_the_2023_order():
    torch.manual_seed(0)
    x, skip = torch.randn(B, 8, 3, 3), torch.randn(B, 4, 6, 6)
    step = randomize_norms(UpConcat(8, 4, dropout=0.1)).eval()
    weights = Weights(step)
    expected = _official_unet_up(weights, x, skip)  # (B, 4 + 4, 6, 6): the skip comes first
    weights.assert_used_up()
    torch.testing.assert_close(step(x, skip), expected)


def test_mutual_decoder_ends_in_a_two_layer_evidential_head():
    """modules.py ``TrustedMutualFeatureDecoder``: UNet_Up steps, 1x1 in -> in/4 -> C, softplus."""
    torch.manual_seed(0)
    decoder = MutualDecoder([4, 8, 16], num_seg_classes=C, evidence="softplus", dropout=0.1)
    decoder = randomize_norms(decoder).eval()
    mutual = [torch.randn(B, 4, 8, 8), torch.randn(B, 8, 4, 4), torch.randn(B, 16, 2, 2)]
    weights = Weights(decoder)
    x = _official_unet_up(weights, mutual[2], mutual[1])  # (B, 8 + 8, 4, 4)
    x = _official_unet_up(weights, x, mutual[0])  # (B, 4 + 4, 8, 8)
    hidden, out = weights.conv(), weights.conv()
    weights.assert_used_up()
    assert hidden.bias is None and out.bias is None  # BasicConv2d: bias=False
    assert hidden.weight.shape == (8 // 4, 8, 1, 1) and out.weight.shape == (C, 8 // 4, 1, 1)
    evidence = F.softplus(F.conv2d(F.conv2d(x, hidden.weight), out.weight))
    alpha = evidence + 1
    stats = decoder(mutual)
    torch.testing.assert_close(stats.evidence, evidence)
    torch.testing.assert_close(stats.alpha, alpha)
    torch.testing.assert_close(stats.uncertainty, C / alpha.sum(1, keepdim=True))


def _official_cls_head(weights, feature):
    """modules.py ``ClsHead``: four SeparableConv2d (3x3 depthwise, dilation 2, then 1x1; no
    biases) -> BN -> ReLU blocks, in -> c -> c/2 -> c/2 -> c; no dropout in 2023."""
    widths = []
    for _ in range(4):
        depthwise, pointwise = weights.conv(), weights.conv()
        assert depthwise.bias is None and pointwise.bias is None
        feature = F.conv2d(
            feature, depthwise.weight, padding=2, dilation=2, groups=feature.shape[1]
        )
        feature = F.relu(batch_norm(weights.norm(), F.conv2d(feature, pointwise.weight), False))
        widths.append(feature.shape[1])
    return feature, widths


def test_instructor_and_classifier_head_read_both_bottom_features():
    torch.manual_seed(0)
    instructor = randomize_norms(UncertaintyInstructor(4, 8, dropout=0.1, dropout_each=True), 1)
    head = ClassifierHead(16, 8, num_classes=2, head="evidential", evidence="softplus")
    head, instructor = randomize_norms(head, 2).eval(), instructor.eval()
    feature, eta = torch.randn(B, 16, 3, 3), torch.randn(B, 4, 3, 3)
    # UncertaintyInstructorForCls: cls_head, conv_reliable (DoubleConv), F + F * eta, pool, linear
    head_weights, instructor_weights = Weights(head), Weights(instructor)
    f, widths = _official_cls_head(head_weights, feature)
    assert widths == [8, 4, 4, 8]
    f = f + f * _official_double_conv(instructor_weights, eta)  # no gate on eta
    head_weights.assert_used_up()
    instructor_weights.assert_used_up()
    assert head.linear.bias is None  # nn.Linear(1024, K, bias=False)
    evidence = F.softplus(f.mean((2, 3)) @ head.linear.weight.T)
    alpha = evidence + 1
    out = head(feature, instructor, eta)
    torch.testing.assert_close(out.class_alpha, alpha)
    torch.testing.assert_close(out.class_uncertainty, 2 / alpha.sum(1, keepdim=True))

    # In the network (UMLNet.forward): the head reads cat[classification bottom, mutual bottom],
    # and eta is the full-resolution navigator's output sampled down to stride 8 (down8).
    model = build_model("uml", num_seg_classes=C, width=4).eval()
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = (args, output)

        return hook

    model.cls_encoder.register_forward_hook(keep("cls"))
    model.mixers[-1].register_forward_hook(keep("mutual"))
    model.output_navigator.register_forward_hook(keep("navigator"))
    model.class_head.register_forward_hook(keep("head"))
    model(torch.rand(B, 3, 16, 16))
    head_input, _, got_eta = seen["head"][0]
    expected_input = torch.cat([seen["cls"][1][-1], seen["mutual"][1]], 1)
    torch.testing.assert_close(head_input, expected_input)
    navigated = seen["navigator"][1][0]  # (B, 2 * width, 16, 16)
    down8 = F.interpolate(navigated, size=(2, 2), mode="bilinear", align_corners=True)
    torch.testing.assert_close(got_eta, down8)


def test_dropout2d_of_0_1_follows_every_double_conv_layer_and_the_navigator_embedding():
    """convs.py ``DoubleConv`` drops after each of its two layers and ``UN_ModuleConcat`` after its
    embedding, all ``Dropout2d(0.1)``; the 2023 ``ClsHead`` and the encoders have none."""
    model = build_model("uml", num_seg_classes=C, width=4)
    followers = {}  # the three layers after every 3x3 convolution of the decoders and instructor
    for name, parent in model.named_modules():
        children = list(parent.children())
        for index, child in enumerate(children):
            if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3) and child.groups == 1:
                followers[f"{name}.{index}"] = children[index + 1 : index + 4]
    outside_encoders = {n: f for n, f in followers.items() if "encoder" not in n}
    assert len(outside_encoders) == 2 * (3 + 3 + 1)  # mutual decoder, segmentation decoder, UI
    for layers in outside_encoders.values():
        assert [type(m) for m in layers][1:] == [nn.ReLU, nn.Dropout2d]
        assert isinstance(layers[0], nn.BatchNorm2d) and layers[2].p == 0.1
    embeddings = [model.bottleneck_navigator.embed, model.output_navigator.embed]
    for embed in embeddings:
        assert isinstance(embed[-1], nn.Dropout2d) and embed[-1].p == 0.1
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == len(outside_encoders) + len(embeddings)  # nowhere else
    assert not any(isinstance(m, nn.Dropout2d) for m in model.class_head.modules())

    # Seeded training-mode forward passes against the same layers written out by hand: the same
    # generator state gives F.dropout2d the same channel masks as umlkit's nn.Dropout2d.
    torch.manual_seed(0)
    x, skip = torch.randn(4, 32, 3, 3), torch.randn(4, 16, 6, 6)
    step = UpConcat(32, 16, dropout=0.1).train()
    torch.manual_seed(1)
    got = step(x, skip)
    torch.manual_seed(1)
    drops = []
    expected = _official_unet_up(Weights(step), x, skip, training=True, drops=drops)
    torch.testing.assert_close(got, expected)
    assert len(drops) == 2 and all(bool(d.any()) for d in drops)  # channels were dropped

    navigator = UncertaintyNavigator(channels=16, num_seg_classes=C, dropout=0.1).train()
    feature, side = torch.randn(4, 16, 5, 4), torch.randn(4, C, 5, 4)
    evidence, uncertainty = 3 * torch.rand(4, C, 5, 4), torch.rand(4, 1, 5, 4)
    torch.manual_seed(2)
    got, _ = navigator(feature, side, evidence, uncertainty)
    torch.manual_seed(2)
    weights = Weights(navigator)
    embed_conv, norm, fuse = weights.conv(), weights.norm(), weights.conv()
    reliable = (side + evidence) * torch.exp(-uncertainty)
    embedded = F.relu(batch_norm(norm, F.conv2d(reliable, embed_conv.weight), True))
    dropped = F.dropout2d(embedded, 0.1, True)
    assert bool(((dropped.flatten(2).amax(-1) == 0) & (embedded.flatten(2).amax(-1) > 0)).any())
    expected = F.conv2d(torch.cat([feature, dropped], 1), fuse.weight)
    torch.testing.assert_close(got, expected)


def test_uml_trains_under_bf16_autocast_on_cuda_only():
    """The official runs are float32. umlkit's TrainConfig.amp (on by default, and the paper
    profile keeps it) runs the forward pass under bf16 autocast on CUDA; on a CPU, float32."""
    assert TrainConfig().amp is True
    assert "amp" not in get_settings("paper")["train"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        torch.manual_seed(0)
        model = build_model("uml", num_seg_classes=2, width=4).to(device)
        seen = []

        def record(module, args, device=device, seen=seen):
            seen.append((torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)))

        model.register_forward_pre_hook(record)
        batch = {
            "image": torch.rand(2, 3, 16, 16),
            "mask": torch.randint(0, 2, (2, 16, 16)),
            "label": torch.tensor([0, 1]),
        }
        config = TrainConfig(model="uml", width=4, image_size=16, epochs=1, batch_size=2)
        optimizer = make_optimizer(model, device, lr=config.lr)
        train_one_epoch(model, [batch], optimizer, official_objective("uml"), config, 0, device)
        assert [enabled for enabled, _ in seen] == [device == "cuda"]
        if device == "cuda":
            assert seen[0][1] == torch.bfloat16


def test_2023_final_segmentation_is_taken_before_the_output_navigator():
    torch.manual_seed(0)
    # Training mode (batch statistics; no dropout) so that fresh features are not vanishingly small.
    model = build_model("uml", num_seg_classes=C, width=4, dropout=0.0)
    x = torch.rand(B, 3, 16, 16)
    before = model(x)
    with torch.no_grad():
        model.output_navigator.fuse.weight.add_(
            torch.randn_like(model.output_navigator.fuse.weight)
        )
    after = model(x)
    torch.testing.assert_close(after.seg_logits, before.seg_logits)  # the output ignores it
    assert not torch.allclose(after.class_alpha, before.class_alpha)  # eta feeds the classifier


def test_navigate_final_option_lets_the_output_navigator_shape_the_segmentation():
    torch.manual_seed(0)
    model = build_model("uml", num_seg_classes=C, width=4, navigate_final=True, dropout=0.0)
    x = torch.rand(B, 3, 16, 16)
    before = model(x).seg_logits
    with torch.no_grad():
        model.output_navigator.fuse.weight.add_(
            torch.randn_like(model.output_navigator.fuse.weight)
        )
    assert not torch.allclose(model(x).seg_logits, before)


def test_2023_bottleneck_screens_the_concatenation_by_the_sampled_uncertainty():
    torch.manual_seed(0)
    model = build_model("uml", num_seg_classes=C, width=4).eval()
    x = torch.rand(B, 3, 16, 16)
    seg, cls, mutual = model._encode(x)
    pixel = model.mutual_decoder(mutual)
    u = F.interpolate(pixel.uncertainty, size=(2, 2), mode="bilinear", align_corners=True)
    bottom = F.conv2d(torch.cat([seg[-1], mutual[-1]], 1) * torch.exp(-u), model.bottleneck.weight)
    side = F.conv2d(bottom, model.seg_heads[0].weight)
    out = model(x)
    # the stride-8 side output (last of side_logits) is the upsampled head of the screened bottleneck
    torch.testing.assert_close(out.side_logits[-1], resize(side, (16, 16)))
    assert len(out.side_logits) == 3


def test_official_init_is_kaiming_normal_on_every_conv_weight_psa_included():
    """UMLNet.py / uml_net.py: kaiming_normal_(fan_out, relu) on every nn.Conv2d weight, BN 1/0,
    conv biases left at PyTorch's default; the encoders are built after that loop."""
    torch.manual_seed(0)
    for name in ("uml", "uml2024"):
        model = build_model(name, width=8)
        standardised, psa, biases = [], [], []
        for module_name, layer in model.named_modules():
            if module_name.split(".")[0].endswith("encoder"):
                continue
            if isinstance(layer, torch.nn.Conv2d):
                out_ch, in_per_group, kh, kw = layer.weight.shape
                # N(0, 2 / fan_out), fan_out = C_out * k * k: standardised, it is N(0, 1).
                z = layer.weight.detach().flatten() / (2.0 / (out_ch * kh * kw)) ** 0.5
                standardised.append(z)
                if ".attention." in module_name:  # the PSA's 1x1 projections
                    psa.append(z)
                if layer.bias is not None:
                    # PyTorch's default: uniform in +-1/sqrt(fan_in), fan_in = C_in/groups * k * k
                    bound = 1.0 / (in_per_group * kh * kw) ** 0.5
                    biases.append(layer.bias.detach().abs() / bound)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                assert bool((layer.weight == 1).all()) and bool((layer.bias == 0).all())
        every, attention, bias = torch.cat(standardised), torch.cat(psa), torch.cat(biases)
        assert every.numel() > 10_000 and attention.numel() > 1_000
        # sample std of n >= 1000 standard normals: within 10 % (more than 4 standard errors)
        assert 0.9 < float(every.std()) < 1.1 and abs(float(every.mean())) < 0.05
        assert 0.9 < float(attention.std()) < 1.1, "the PSA projections are not Kaiming-normal"
        # default biases: |b| / bound is uniform on [0, 1]: bounded by 1, mean 1/2, never all zero
        assert float(bias.max()) <= 1.0 and 0.4 < float(bias.mean()) < 0.6
