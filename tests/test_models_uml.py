"""umlkit.models.uml against the official computations, written out independently.

Each test restates what the authors' code computes (KarryRen/UML, ``models/modules.py``) in a few
lines of tensor algebra — per-pixel convolutions, explicit concatenations and reshapes — and
compares it with umlkit's block on random input. ``docs/fidelity.md`` maps every block to these
tests.
"""

import pytest
import torch
import torch.nn.functional as F

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

B, C = 2, 3


def _pixelwise(linear, t):
    """A 1x1 convolution with an ``nn.Linear``'s weights."""
    return F.conv2d(t, linear.weight[:, :, None, None], linear.bias)


def _official_psa(psa, x):
    """modules.py ``PolarizedSelfAttention``: every conv on every pixel, sequential branches."""
    q = psa.channel_query(x).flatten(2).softmax(-1)  # (B, 1, HW): softmax over the pixels
    v = _pixelwise(psa.channel_value, x).flatten(2)  # (B, C/2, HW)
    z = torch.bmm(v, q.transpose(1, 2)).squeeze(-1)  # (B, C/2)
    channel = torch.sigmoid(
        psa.channel_norm(F.linear(z, psa.channel_up.weight, psa.channel_up.bias))
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


def test_up_step_follows_the_2023_order():
    torch.manual_seed(0)
    x, skip = torch.randn(B, 8, 3, 3), torch.randn(B, 4, 6, 6)
    step = UpConcat(8, 4, dropout=0.1).eval()
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    torch.testing.assert_close(step(x, skip), torch.cat([skip, step.conv(up)], 1))


def test_mutual_decoder_ends_in_a_two_layer_evidential_head():
    torch.manual_seed(0)
    decoder = MutualDecoder([4, 8, 16], num_seg_classes=C, evidence="softplus", dropout=0.1).eval()
    mutual = [torch.randn(B, 4, 8, 8), torch.randn(B, 8, 4, 4), torch.randn(B, 16, 2, 2)]
    x = decoder.steps[1](decoder.steps[0](mutual[2], mutual[1]), mutual[0])  # 2 * 4 channels
    evidence = F.softplus(F.conv2d(F.conv2d(x, decoder.head[0].weight), decoder.head[1].weight))
    stats = decoder(mutual)
    torch.testing.assert_close(stats.alpha, evidence + 1)
    torch.testing.assert_close(stats.uncertainty, C / (evidence + 1).sum(1, keepdim=True))


def test_instructor_and_classifier_head_read_both_bottom_features():
    torch.manual_seed(0)
    instructor = UncertaintyInstructor(4, 8, dropout=0.1, dropout_each=True).eval()
    head = ClassifierHead(16, 8, num_classes=2, head="evidential", evidence="softplus").eval()
    feature, eta = torch.randn(B, 16, 3, 3), torch.randn(B, 4, 3, 3)
    f = head.convs(feature)
    f = f + f * instructor.conv(eta)  # F' = F + F * DoubleConv(eta), no gate
    evidence = F.softplus(f.mean((2, 3)) @ head.linear.weight.T)  # linear without bias
    out = head(feature, instructor, eta)
    torch.testing.assert_close(out.class_alpha, evidence + 1)
    assert head.linear.bias is None
    assert [type(m).__name__ for m in instructor.conv][:4] == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Dropout2d",
    ]
    assert instructor.conv[0].kernel_size == (3, 3)


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
