"""umlkit.fastpath: the switch, and the same numbers on the fast and the plain path."""

import pytest
import torch

from umlkit import fastpath
from umlkit.evidential import evidential_terms, mean_evidential_terms
from umlkit.models.blocks import BatchNorm2d


@pytest.fixture
def two_threads():
    """torch on two CPU threads (the batch-norm fast path needs more than one), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def count_fast_batch_norm(monkeypatch):
    """A list that records every call of :func:`fastpath.one_thread_batch_norm`."""
    calls = []
    original = fastpath.one_thread_batch_norm

    def counted(layer, x):
        calls.append(tuple(x.shape))
        return original(layer, x)

    monkeypatch.setattr(fastpath, "one_thread_batch_norm", counted)
    return calls


def test_switch_defaults_to_on_and_follows_the_environment(monkeypatch):
    assert fastpath.set_enabled(None) is None  # no choice made by an earlier test
    monkeypatch.delenv(fastpath.ENVIRONMENT_VARIABLE, raising=False)
    assert fastpath.enabled()
    monkeypatch.setenv(fastpath.ENVIRONMENT_VARIABLE, "0")
    assert not fastpath.enabled()
    with fastpath.use(True):
        assert fastpath.enabled()
    assert not fastpath.enabled()
    monkeypatch.setenv(fastpath.ENVIRONMENT_VARIABLE, "1")
    assert fastpath.enabled()


def test_switch_is_restored_after_a_block_even_on_error():
    with pytest.raises(RuntimeError, match="inside"):
        with fastpath.disabled():
            assert not fastpath.enabled()
            raise RuntimeError("inside")
    assert fastpath.set_enabled(False) is None
    assert not fastpath.enabled()
    assert fastpath.set_enabled(None) is False
    with pytest.raises(ValueError, match="True, False or None"):
        fastpath.set_enabled("no")


def _batch_norm_results(channels: int, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """(output, input grad, weight grad, bias grad, running mean, running var, batches) per path."""
    generator = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(4, channels, 6, 5, generator=generator) + 1).contiguous(
        memory_format=torch.channels_last
    )
    upstream = torch.randn(4, channels, 6, 5, generator=generator)
    results = []
    for flag in (True, False):
        layer = BatchNorm2d(channels)
        with torch.no_grad():
            layer.weight.copy_(torch.linspace(0.5, 2.0, channels))
            layer.bias.copy_(torch.linspace(-1.0, 1.0, channels))
        inputs = x.clone().requires_grad_()
        with fastpath.use(flag):
            for _ in range(2):  # twice: the running statistics are updated from their last values
                output = layer(inputs)
            output.backward(upstream)
        results.append(
            (output, inputs.grad, layer.weight.grad, layer.bias.grad)
            + (layer.running_mean, layer.running_var, layer.num_batches_tracked)
        )
    return results


@pytest.mark.parametrize("channels", [8, 16])
def test_batch_norm_fast_and_plain_paths_agree(channels, two_threads, count_fast_batch_norm):
    fast, plain = _batch_norm_results(channels, seed=channels)
    # 8 channels on two threads, channels-last: the fast path runs (twice, with it on only).
    assert len(count_fast_batch_norm) == (2 if channels == 8 else 0)
    for fast_value, plain_value in zip(fast, plain, strict=True):
        torch.testing.assert_close(fast_value, plain_value, rtol=1e-5, atol=1e-5)
    assert fast[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.get_num_threads() == 2


def test_batch_norm_fast_path_only_where_torch_is_slow(two_threads):
    layer = BatchNorm2d(8)
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    assert fastpath.takes_one_thread_batch_norm(layer, x)
    assert not fastpath.takes_one_thread_batch_norm(layer, x.contiguous())  # NCHW
    assert not fastpath.takes_one_thread_batch_norm(layer.eval(), x)
    with fastpath.disabled():
        assert not fastpath.takes_one_thread_batch_norm(layer.train(), x)
    torch.set_num_threads(1)
    assert not fastpath.takes_one_thread_batch_norm(layer, x)


def test_batch_norm_state_dict_is_that_of_torch_batch_norm():
    assert BatchNorm2d(8).state_dict().keys() == torch.nn.BatchNorm2d(8).state_dict().keys()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_digamma_terms_fast_and_plain_paths_agree(layout):
    generator = torch.Generator().manual_seed(3)
    alpha = 1 + 30 * torch.rand(3, 4, 5, 6, generator=generator, dtype=torch.float64) ** 2
    if layout == "channels_last":
        alpha = alpha.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 4, (3, 5, 6), generator=generator)
    results = []
    for flag in (True, False):
        leaf = alpha.clone().requires_grad_()
        with fastpath.use(flag):
            loss, kl = mean_evidential_terms(leaf, target)
        (0.6 * loss + 0.4 * kl).backward()
        results.append((loss, kl, leaf.grad))
    for fast_value, plain_value in zip(*results, strict=True):
        torch.testing.assert_close(fast_value, plain_value)
    plain_loss, plain_kl = evidential_terms(alpha, target)
    torch.testing.assert_close(results[1][0], plain_loss.mean(), rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], plain_kl.mean(), rtol=0, atol=0)


def test_fast_paths_step_aside_under_torch_compile(two_threads):
    seen = []

    def function(x):
        seen.append(fastpath.enabled())
        return x + 1

    torch.compile(function, backend="eager", fullgraph=True)(torch.zeros(2))
    assert seen == [False]
    assert fastpath.enabled()
