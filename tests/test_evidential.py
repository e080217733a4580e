"""umlkit.evidential: evidence, Dirichlet statistics, evidential losses, KL term, annealing."""

import math
from functools import partial

import pytest
import torch

from umlkit.evidential import (
    EXP_LOGIT_CLAMP,
    annealing_coefficient,
    dirichlet,
    dirichlet_from_alpha,
    evidence_from_logits,
    evidential_loss,
    evidential_terms,
    kl_to_uniform,
    mean_evidential_terms,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_evidence_functions_hand_computed():
    logits = torch.tensor([-1.0, 0.0, 2.0, 100.0])
    # softplus(0) = ln 2; softplus(2) = ln(1 + e^2)
    softplus = evidence_from_logits(logits, "softplus")
    assert softplus[1].item() == pytest.approx(math.log(2.0))
    assert softplus[2].item() == pytest.approx(math.log(1 + math.e**2))
    assert evidence_from_logits(logits, "relu").tolist() == [0.0, 0.0, 2.0, 100.0]
    exp = evidence_from_logits(logits, "exp")
    assert exp[1].item() == pytest.approx(1.0)
    assert exp[3].item() == pytest.approx(math.exp(EXP_LOGIT_CLAMP), rel=1e-6)  # clamped, finite


def test_evidence_from_logits_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown evidence kind"):
        evidence_from_logits(torch.zeros(2), "sigmoid")
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        evidence_from_logits([0.0, 1.0])


def test_dirichlet_hand_computed():
    # e = (2, 0, 1): alpha = (3, 1, 2), S = 6, b = (2/6, 0, 1/6), p = (3/6, 1/6, 2/6), u = 3/6
    stats = dirichlet(torch.tensor([[2.0, 0.0, 1.0]]))
    assert stats.alpha.tolist() == [[3.0, 1.0, 2.0]]
    assert stats.strength.tolist() == [[6.0]]
    torch.testing.assert_close(stats.belief, torch.tensor([[2 / 6, 0.0, 1 / 6]]))
    torch.testing.assert_close(stats.prob, torch.tensor([[0.5, 1 / 6, 2 / 6]]))
    torch.testing.assert_close(stats.uncertainty, torch.tensor([[0.5]]))


def test_dirichlet_pixelwise_shapes_and_identities():
    evidence = torch.rand(2, 4, 3, 5) * 10
    stats = dirichlet(evidence)
    assert stats.uncertainty.shape == (2, 1, 3, 5)
    assert stats.strength.shape == (2, 1, 3, 5)
    # sum_k b_k + u = 1 and sum_k p_k = 1 at every pixel
    torch.testing.assert_close(
        stats.belief.sum(1, keepdim=True) + stats.uncertainty, torch.ones(2, 1, 3, 5)
    )
    torch.testing.assert_close(stats.prob.sum(1), torch.ones(2, 3, 5))
    # the same numbers with the class dimension last
    last = dirichlet(evidence.movedim(1, -1), dim=-1)
    torch.testing.assert_close(last.prob.movedim(-1, 1), stats.prob)
    from_alpha = dirichlet_from_alpha(stats.alpha)
    torch.testing.assert_close(from_alpha.uncertainty, stats.uncertainty)


def test_dirichlet_is_frozen():
    stats = dirichlet(torch.ones(1, 2))
    with pytest.raises(AttributeError):
        stats.alpha = torch.ones(1, 2)


def test_dirichlet_rejects_bad_evidence():
    with pytest.raises(ValueError, match="evidence must be >= 0"):
        dirichlet(torch.tensor([[1.0, -0.5]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        dirichlet(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        dirichlet_from_alpha(torch.tensor([[0.5, 2.0]]))
    # one image's scores without the batch dimension: no dimension 1 to hold the classes
    with pytest.raises(ValueError, match=r"shape \(2,\) has no class dimension dim=1"):
        dirichlet(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(\) has no class dimension dim=-1"):
        dirichlet_from_alpha(torch.tensor(2.0), dim=-1)
    # ...which dim=-1 names: alpha = (2, 4), S = 6
    assert dirichlet(torch.tensor([1.0, 3.0]), dim=-1).prob.tolist() == pytest.approx(
        [1 / 3, 2 / 3]
    )


ALPHA = torch.tensor([[3.0, 1.0]])  # S = 4, p = (0.75, 0.25)
TARGET = torch.tensor([0])


def test_digamma_loss_hand_computed():
    # psi(S) - psi(alpha_0) = psi(4) - psi(3) = 1/3   (psi(x + 1) = psi(x) + 1/x)
    assert evidential_loss(ALPHA, TARGET, "digamma").item() == pytest.approx(1 / 3, rel=1e-5)


def test_log_loss_hand_computed():
    # ln S - ln alpha_0 = ln 4 - ln 3
    assert evidential_loss(ALPHA, TARGET, "log").item() == pytest.approx(math.log(4 / 3), rel=1e-6)


def test_mse_loss_hand_computed():
    # (1 - .75)^2 + (0 - .25)^2 + [.75 * .25 + .25 * .75] / (S + 1) = .0625 + .0625 + .375 / 5 = 0.2
    assert evidential_loss(ALPHA, TARGET, "mse").item() == pytest.approx(0.2, rel=1e-6)


def test_kl_hand_computed_and_against_torch_distributions():
    # alpha = (1, 3), target 0: alpha~ = (1, 3), S~ = 4, K = 2
    # ln G(4) - ln G(2) - ln G(1) - ln G(3) + (3 - 1)(psi(3) - psi(4)) = ln 6 - ln 2 - 2/3 = ln 3 - 2/3
    kl = kl_to_uniform(torch.tensor([[1.0, 3.0]]), TARGET)
    assert kl.item() == pytest.approx(math.log(3) - 2 / 3, rel=1e-5)
    # an independent implementation: torch.distributions
    generator = torch.Generator().manual_seed(0)
    alpha = 1 + 5 * torch.rand(6, 4, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 4, (6,), generator=generator)
    alpha_tilde = alpha.clone()
    alpha_tilde[torch.arange(6), target] = 1.0
    expected = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(alpha_tilde), torch.distributions.Dirichlet(torch.ones(4))
    )
    torch.testing.assert_close(kl_to_uniform(alpha, target), expected.double())


def test_evidential_terms_hand_computed_and_equal_to_the_two_functions():
    # alpha = (1, 3), target 0: psi(4) - psi(1) = 1 + 1/2 + 1/3 and, as above, KL = ln 3 - 2/3
    loss, kl = evidential_terms(torch.tensor([[1.0, 3.0]]), TARGET)
    assert loss.item() == pytest.approx(11 / 6, rel=1e-5)
    assert kl.item() == pytest.approx(math.log(3) - 2 / 3, rel=1e-5)
    generator = torch.Generator().manual_seed(2)
    alpha = 1 + 4 * torch.rand(2, 3, 4, 5, generator=generator)
    target = torch.randint(0, 3, (2, 4, 5), generator=generator)
    for kind in ("digamma", "log", "mse"):
        loss, kl = evidential_terms(alpha, target, kind)
        torch.testing.assert_close(loss, evidential_loss(alpha, target, kind))
        torch.testing.assert_close(kl, kl_to_uniform(alpha, target))


def test_mean_evidential_terms_hand_computed_value_and_gradient():
    # alpha = (1, 3), target 0 (as above): L = 11/6, KL = ln 3 - 2/3.
    # dL/dalpha = (psi'(4) - psi'(1), psi'(4)) with psi'(1) = pi^2/6, psi'(4) = pi^2/6 - 1 - 1/4 - 1/9;
    # dKL/dalpha_1 = (3 - 1) psi'(3) - (S~ - K) psi'(S~) with S~ = 1 + 3, K = 2:
    # 2 (psi'(3) - psi'(4)) = 2/9 (the derivative of KL = ln a - (a - 1)/a at a = 3), and 0 for
    # the true class, whose alpha~ is the constant 1.
    alpha = torch.tensor([[1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    loss, kl = mean_evidential_terms(alpha, TARGET)
    assert loss.item() == pytest.approx(11 / 6)
    assert kl.item() == pytest.approx(math.log(3) - 2 / 3)
    (grad_loss,) = torch.autograd.grad(loss, alpha, retain_graph=True)
    (grad_kl,) = torch.autograd.grad(kl, alpha)
    trigamma_1, trigamma_4 = math.pi**2 / 6, math.pi**2 / 6 - 1 - 1 / 4 - 1 / 9
    torch.testing.assert_close(
        grad_loss, torch.tensor([[trigamma_4 - trigamma_1, trigamma_4]], dtype=torch.float64)
    )
    torch.testing.assert_close(grad_kl, torch.tensor([[0.0, 2 / 9]], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["digamma", "log", "mse"])
def test_mean_evidential_terms_equal_the_means_of_the_plain_terms_with_gradients(kind):
    generator = torch.Generator().manual_seed(5)
    alpha = (1 + 20 * torch.rand(3, 4, 5, 6, generator=generator, dtype=torch.float64)) ** 1.5
    target = torch.randint(0, 4, (3, 5, 6), generator=generator)
    fused_alpha, plain_alpha = alpha.clone().requires_grad_(), alpha.clone().requires_grad_()
    loss, kl = mean_evidential_terms(fused_alpha, target, kind)
    plain_loss, plain_kl = evidential_terms(plain_alpha, target, kind)
    torch.testing.assert_close(loss, plain_loss.mean())
    torch.testing.assert_close(kl, plain_kl.mean())
    (0.7 * loss + 0.3 * kl).backward()
    (0.7 * plain_loss.mean() + 0.3 * plain_kl.mean()).backward()
    torch.testing.assert_close(fused_alpha.grad, plain_alpha.grad)


def test_mean_evidential_terms_pass_gradcheck_on_channels_last_maps():
    generator = torch.Generator().manual_seed(6)
    alpha = 1 + 3 * torch.rand(2, 3, 4, 4, generator=generator, dtype=torch.float64)
    alpha = alpha.contiguous(memory_format=torch.channels_last).requires_grad_()
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    assert torch.autograd.gradcheck(lambda a: mean_evidential_terms(a, target), (alpha,))


@pytest.mark.parametrize("terms", [evidential_terms, mean_evidential_terms])
def test_evidential_terms_reject_bad_input(terms):
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        terms(torch.tensor([[0.5, 2.0]]), TARGET)
    with pytest.raises(ValueError, match="out of range"):
        terms(ALPHA, torch.tensor([2]))
    with pytest.raises(ValueError, match="must hold class indices of shape"):
        terms(torch.full((2, 2, 3, 3), 2.0), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown evidential loss kind"):
        terms(ALPHA, TARGET, "hinge")


def test_kl_is_zero_without_misleading_evidence():
    alpha = torch.ones(3, 4, 2, 2)
    target = torch.tensor([0, 2, 3]).view(3, 1, 1).expand(3, 2, 2)
    alpha.scatter_(1, target.unsqueeze(1), 50.0)  # all evidence on the true class
    # alpha~ = 1 everywhere: KL(Dir(1) || Dir(1)) = 0 in exact arithmetic; the log-gamma terms
    # come from the CPU's vectorised kernels, so up to their rounding
    torch.testing.assert_close(
        kl_to_uniform(alpha, target), torch.zeros(3, 2, 2), rtol=0, atol=1e-6
    )


def test_pixelwise_loss_equals_samplewise():
    generator = torch.Generator().manual_seed(1)
    alpha = 1 + 4 * torch.rand(2, 3, 4, 5, generator=generator)
    target = torch.randint(0, 3, (2, 4, 5), generator=generator)
    flat_alpha = alpha.movedim(1, -1).reshape(-1, 3)
    for kind in ("digamma", "log", "mse"):
        per_pixel = evidential_loss(alpha, target, kind)
        assert per_pixel.shape == (2, 4, 5)
        torch.testing.assert_close(
            per_pixel.reshape(-1), evidential_loss(flat_alpha, target.reshape(-1), kind)
        )
    torch.testing.assert_close(
        kl_to_uniform(alpha, target).reshape(-1), kl_to_uniform(flat_alpha, target.reshape(-1))
    )


@pytest.mark.parametrize("kind", ["digamma", "log", "mse"])
def test_losses_decrease_with_true_evidence_and_grow_with_wrong(kind):
    evidence = torch.tensor([0.0, 1.0, 10.0, 100.0])
    on_true = torch.stack([evidence, torch.zeros(4)], dim=1) + 1
    on_wrong = torch.stack([torch.zeros(4), evidence], dim=1) + 1
    target = torch.zeros(4, dtype=torch.long)
    assert (evidential_loss(on_true, target, kind).diff() < 0).all()
    assert (evidential_loss(on_wrong, target, kind).diff() > 0).all()


@pytest.mark.parametrize("evidence_value", [0.0, 1e-3, 1.0, 1e3, 1e6])
def test_finite_values_and_gradients_from_zero_to_huge_evidence(evidence_value):
    evidence = torch.tensor(
        [[evidence_value, 0.0], [0.0, evidence_value], [evidence_value, evidence_value]],
        requires_grad=True,
    )
    target = torch.tensor([0, 0, 1])
    terms = [partial(evidential_loss, target=target, kind=k) for k in ("digamma", "log", "mse")]
    for term in [*terms, partial(kl_to_uniform, target=target)]:
        value = term(evidence + 1)
        assert torch.isfinite(value).all()
        (gradient,) = torch.autograd.grad(value.sum(), evidence)
        assert torch.isfinite(gradient).all()


def test_gradient_through_softplus_logits_is_finite_at_extremes():
    logits = torch.tensor([[-30.0, 0.0], [1e6, -1e6]], requires_grad=True)
    alpha = evidence_from_logits(logits) + 1
    loss = (
        evidential_loss(alpha, torch.tensor([0, 1])).sum()
        + kl_to_uniform(alpha, torch.tensor([0, 1])).sum()
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    alpha = torch.tensor([[3.0, 1.0], [1.0, 200.0]])
    target = torch.tensor([0, 0])
    for kind in ("digamma", "log", "mse"):
        half = evidential_loss(alpha.to(dtype), target, kind)
        assert half.dtype == torch.float32
        torch.testing.assert_close(half, evidential_loss(alpha, target, kind))
    assert kl_to_uniform(alpha.to(dtype), target).dtype == torch.float32
    assert dirichlet(torch.ones(1, 3, dtype=dtype)).uncertainty.dtype == torch.float32
    assert evidence_from_logits(torch.zeros(2, dtype=dtype)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(2)
    alpha = 1 + 10 * torch.rand(2, 3, 4, 4, generator=generator)
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    for kind in ("digamma", "log", "mse"):
        torch.testing.assert_close(
            evidential_loss(alpha.cuda(), target.cuda(), kind).cpu(),
            evidential_loss(alpha, target, kind),
        )
    torch.testing.assert_close(
        kl_to_uniform(alpha.cuda(), target.cuda()).cpu(), kl_to_uniform(alpha, target)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_every_available_device(device):
    alpha = torch.tensor([[1.0, 3.0]], device=device)
    assert kl_to_uniform(alpha, torch.tensor([0], device=device)).device.type == device


def test_loss_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        evidential_loss(torch.tensor([[0.5, 2.0]]), TARGET)
    with pytest.raises(ValueError, match="NaN or inf"):
        kl_to_uniform(torch.tensor([[float("inf"), 2.0]]), TARGET)
    with pytest.raises(ValueError, match="class dimension"):
        evidential_loss(torch.tensor([2.0, 2.0]), TARGET)


def test_loss_rejects_bad_target():
    with pytest.raises(ValueError, match=r"target must hold class indices of shape \(1,\)"):
        evidential_loss(ALPHA, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"shape \(2, 3, 3\)"):
        kl_to_uniform(torch.full((2, 2, 3, 3), 2.0), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        evidential_loss(ALPHA, torch.tensor([2]))
    with pytest.raises(ValueError, match="out of range"):
        kl_to_uniform(ALPHA, torch.tensor([-1]))
    with pytest.raises(ValueError, match="integer tensor"):
        evidential_loss(ALPHA, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="unknown evidential loss kind"):
        evidential_loss(ALPHA, TARGET, "hinge")


def test_annealing_coefficient():
    assert annealing_coefficient(0) == 0.0
    assert annealing_coefficient(25, 50) == 0.5
    assert annealing_coefficient(50, 50) == 1.0
    assert annealing_coefficient(80, 50) == 1.0
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        annealing_coefficient(-1)
    with pytest.raises(ValueError, match="anneal_epochs must be positive"):
        annealing_coefficient(3, 0)
