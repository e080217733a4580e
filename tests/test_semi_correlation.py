"""umlkit.semi.correlation: CAML's memory of labeled pixels, its queries and the OCC loss."""

import math

import pytest
import torch

from umlkit.semi.correlation import (
    CorrelationMemory,
    correlation,
    omni_correlation_loss,
    select_queries,
)


# ------------------------------------------------------------------------------------- L_o
def test_correlation_and_occ_hand_computed():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    query_v = torch.tensor([[1.0, 0.0]], requires_grad=True)
    query_a = torch.tensor([[0.0, 1.0]], requires_grad=True)
    high, low = math.e / (math.e + 1), 1 / (math.e + 1)  # softmax([1, 0])
    assert torch.allclose(correlation(query_v, memory, 1.0), torch.tensor([[high, low]]))
    # H(C_a, C_v) = -(low ln high + high ln low): a is the target, v the prediction
    expected = -(low * math.log(high) + high * math.log(low))
    loss = omni_correlation_loss(query_v, query_a, memory, temperature=1.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_occ_transcribes_the_official_value_and_gradients():
    """Official: sum(-C_a * log(C_v + 1e-8)) / N, one-directional, gradients to both sides."""
    torch.manual_seed(0)
    query_v = (0.3 * torch.randn(10, 6, dtype=torch.float64)).requires_grad_()
    query_a = (0.3 * torch.randn(10, 6, dtype=torch.float64)).requires_grad_()
    memory = (0.3 * torch.randn(7, 6, dtype=torch.float64)).requires_grad_()
    ours = omni_correlation_loss(query_v, query_a, memory)
    corr_v = torch.softmax(query_v @ memory.detach().T / 0.1, dim=1)
    corr_a = torch.softmax(query_a @ memory.detach().T / 0.1, dim=1)
    official = torch.sum(torch.sum(-corr_a * torch.log(corr_v + 1e-8), dim=1)) / len(corr_a)
    assert ours.item() == pytest.approx(official.item(), rel=1e-12)
    grads = torch.autograd.grad(ours, (query_v, query_a), retain_graph=True)
    expected = torch.autograd.grad(official, (query_v, query_a))
    for grad, reference in zip(grads, expected, strict=True):
        assert torch.allclose(grad, reference) and grad.abs().sum() > 0
    assert torch.autograd.grad(ours, memory, allow_unused=True)[0] is None  # M is a constant
    # one-directional: swapping the models changes the value
    assert omni_correlation_loss(query_a, query_v, memory).item() != pytest.approx(ours.item())


def test_occ_is_zero_but_connected_without_memory_or_queries():
    q = torch.randn(4, 3, requires_grad=True)
    loss = omni_correlation_loss(q, q, torch.zeros(0, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    assert omni_correlation_loss(q[:0], q[:0], torch.randn(5, 3)).item() == 0.0


def test_occ_rejects_bad_inputs():
    q = torch.randn(4, 3)
    with pytest.raises(ValueError, match="differ"):
        omni_correlation_loss(q, q[:2], torch.zeros(1, 3))
    with pytest.raises(ValueError, match="share D"):
        omni_correlation_loss(q, q, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="temperature"):
        omni_correlation_loss(q, q, torch.zeros(2, 3), temperature=0.0)


# ---------------------------------------------------------------------------------- memory
def test_memory_slots_are_replaced_and_sampling_skips_small_classes():
    memory = CorrelationMemory(num_classes=3, dim=2)
    assert len(memory.sample(2)[0]) == 0
    memory.replace(7, torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 0]))
    memory.replace(3, torch.tensor([[3.0, 0.0], [0.0, 9.0]]), torch.tensor([0, 1]))
    memory.replace(7, torch.tensor([[4.0, 0.0]]), torch.tensor([0]))  # slot 7 is replaced
    assert len(memory) == 3 and sorted(memory.slots) == [3, 7]
    entries, labels = memory.entries()
    assert entries[:, 0].tolist() == [3.0, 0.0, 4.0]  # slot order
    torch.manual_seed(0)
    keys, key_labels = memory.sample(2)  # class 0 has 2 entries, class 1 only 1, class 2 none
    assert key_labels.tolist() == [0, 0]
    assert sorted(keys[:, 0].tolist()) == [3.0, 4.0]
    keys, key_labels = memory.sample(1)
    assert key_labels.tolist() == [0, 1] and keys[1].tolist() == [0.0, 9.0]
    with pytest.raises(ValueError, match="labels"):
        memory.replace(1, torch.zeros(2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="projections"):
        memory.replace(1, torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


def test_memory_is_in_the_state_dict():
    memory = CorrelationMemory(num_classes=2, dim=2)
    memory.replace(4, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([1, 0]))
    memory.replace(0, torch.tensor([[5.0, 6.0]]), torch.tensor([1]))
    restored = CorrelationMemory(num_classes=2, dim=2)
    restored.load_state_dict(memory.state_dict())
    for got, expected in zip(restored.entries(), memory.entries(), strict=True):
        assert torch.equal(got, expected)
    assert sorted(restored.slots) == [0, 4]


# --------------------------------------------------------------------------------- queries
def test_select_queries_keeps_the_most_confident_per_class_and_drops_singletons():
    confidence = torch.tensor([0.9, 0.6, 0.99, 0.7, 0.8, 0.95, 0.5])
    classes = torch.tensor([0, 0, 1, 0, 0, 2, 1])
    # class 0: rows 0 (0.9), 4 (0.8), 3 (0.7), 1 (0.6) -> top 3; class 1: rows 2, 6; class 2 alone
    assert select_queries(confidence, classes, 3, per_class=3).tolist() == [0, 4, 3, 2, 6]
    assert select_queries(confidence, classes, 3, per_class=10).tolist() == [0, 4, 3, 1, 2, 6]
    assert len(select_queries(confidence[:1], classes[:1], 3, per_class=3)) == 0
