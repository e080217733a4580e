"""umlkit.models.uml2024 against the authors' 2024 code (``models/uml_net.py``), written out again."""

import torch
import torch.nn.functional as F

from umlkit.models import build_model
from umlkit.models.uml2024 import AttentionGateNavigator, UpConv

B, C = 2, 3


def test_up_step_follows_the_2024_order():
    torch.manual_seed(0)
    x, skip = torch.randn(B, 8, 3, 3), torch.randn(B, 4, 6, 6)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    step = UpConv(8, 4, dropout=0.1).eval()
    expected = step.after(torch.cat([step.before(up), skip], 1))
    torch.testing.assert_close(step(x, skip), expected)


def test_attention_gate_is_fed_the_full_resolution_mutual_feature():
    torch.manual_seed(0)
    gate = AttentionGateNavigator(channels=8).eval()
    x = torch.randn(B, 8, 4, 4)
    mutual, uncertainty = torch.randn(B, 2, 16, 16), torch.rand(B, 1, 16, 16)
    # uml_net.py: nn.Upsample(scale_factor=1/4, bilinear, align_corners=True), channels repeated
    m = F.interpolate(mutual, size=(4, 4), mode="bilinear", align_corners=True).repeat(1, 4, 1, 1)
    u = F.interpolate(uncertainty, size=(4, 4), mode="bilinear", align_corners=True)
    screened = x * torch.exp(-u)
    inner = F.relu(gate.skip_projection(screened) + gate.mutual_projection(m))
    psi = torch.sigmoid(gate.gate[2](gate.gate[1](inner)))
    out, got_psi = gate(x, mutual, uncertainty)
    torch.testing.assert_close(got_psi, psi)
    torch.testing.assert_close(out, screened * psi)


def test_2024_mutual_levels_and_single_output():
    torch.manual_seed(0)
    model = build_model("uml2024", num_seg_classes=C, width=4).eval()
    out = model(torch.rand(B, 3, 16, 16))
    assert out.side_logits is None  # no deep supervision of the segmentation decoder
    assert len(out.mutual_alphas) == 3 and all(a.shape == (B, C, 16, 16) for a in out.mutual_alphas)
    assert all(bool((a >= 1).all()) for a in out.mutual_alphas)
