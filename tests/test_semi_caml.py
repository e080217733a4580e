"""CAML pieces: sharpening, mutual consistency, CMA, the memory and the OCC loss."""

import math

import pytest
import torch

from umlkit.semi.caml import (
    CorrelationMemory,
    CrossSampleMutualAttention,
    correlation,
    mutual_consistency_loss,
    omni_correlation_loss,
    sharpen,
)


def test_sharpen_hand_computed():
    p = torch.tensor([0.6, 0.5, 0.0, 1.0])
    # T = 0.5: 0.6^2 / (0.6^2 + 0.4^2) = 0.36 / 0.52
    assert sharpen(p, 0.5)[0].item() == pytest.approx(0.36 / 0.52)
    # T = 0.1: 0.6^10 / (0.6^10 + 0.4^10)
    expected = 0.6**10 / (0.6**10 + 0.4**10)
    assert torch.allclose(sharpen(p, 0.1), torch.tensor([expected, 0.5, 0.0, 1.0]))


def test_sharpen_keeps_binary_pairs_summing_to_one():
    p = torch.tensor([0.2, 0.7, 0.93])
    assert torch.allclose(sharpen(p) + sharpen(1 - p), torch.ones(3))


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
    loss.backward()
    assert prob_v.grad is not None and prob_a.grad is not None


def test_mutual_consistency_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ"):
        mutual_consistency_loss(torch.rand(1, 2, 2, 2), torch.rand(1, 2, 2, 3))


def test_cma_shapes_cross_sample_mixing_and_identity_at_eval():
    torch.manual_seed(0)
    cma = CrossSampleMutualAttention(channels=8, num_heads=2)
    feature = torch.randn(3, 8, 2, 4)
    out = cma(feature)
    assert out.shape == feature.shape
    assert not torch.allclose(out, feature)
    # inter-sample attention: changing sample 2 changes the output of sample 0
    other = feature.clone()
    other[2] = torch.randn(8, 2, 4)  # (a constant shift would vanish in the layer norm)
    assert not torch.allclose(cma(other)[0], out[0])
    cma.eval()
    assert torch.equal(cma(feature), feature)


def test_cma_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divide"):
        CrossSampleMutualAttention(channels=6, num_heads=4)


def test_correlation_and_occ_hand_computed():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    query_v = torch.tensor([[1.0, 0.0]], requires_grad=True)
    query_a = torch.tensor([[0.0, 1.0]], requires_grad=True)
    high, low = math.e / (math.e + 1), 1 / (math.e + 1)  # softmax([1, 0])
    assert torch.allclose(correlation(query_v, memory, 1.0), torch.tensor([[high, low]]))
    # H(C_a, C_v) = -(low ln high + high ln low), and the same by symmetry
    expected = -(low * math.log(high) + high * math.log(low))
    loss = omni_correlation_loss(query_v, query_a, memory, temperature=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert query_v.grad.abs().sum() > 0 and query_a.grad.abs().sum() > 0


def test_occ_is_zero_without_memory_or_queries():
    q = torch.randn(4, 3, requires_grad=True)
    assert omni_correlation_loss(q, q, torch.zeros(0, 3)).item() == 0.0
    with pytest.raises(ValueError, match="differ"):
        omni_correlation_loss(q, q[:2], torch.zeros(1, 3))


def test_memory_fifo_and_per_class_sampling():
    memory = CorrelationMemory(num_classes=2, dim=2, size_per_class=3)
    assert len(memory.sample(5)[0]) == 0
    rows = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [0.0, 9.0]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    memory.push(rows[:2], labels[:2], per_class=10)
    memory.push(rows[2:], labels[2:], per_class=10)  # class 0 overflows: row 1 is overwritten
    assert memory.filled.tolist() == [3, 1]
    assert sorted(memory.bank[0, :, 0].tolist()) == [2.0, 3.0, 4.0]
    entries, entry_labels = memory.sample(2, generator=torch.Generator().manual_seed(0))
    assert entry_labels.tolist() == [0, 0, 1]
    assert entries[2].tolist() == [0.0, 9.0]
    memory.push(rows[:4], labels[:4], per_class=1)  # a cap of one new row per class
    assert memory.pointer[0].item() == 2
