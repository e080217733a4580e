"""Helpers of the transcription tests (``test_models_uml.py``, ``test_models_uml2024.py``).

The official layers are written out there with ``torch.nn.functional`` alone; umlkit's modules only
lend their weights, handed out in the order they were registered (:class:`Weights`), and none of
their forward methods is called to build an expected value. pytest puts ``tests/`` on the import
path (``pythonpath`` in ``pyproject.toml``), so the tests import this module by name.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Weights:
    """The Conv2d and BatchNorm2d layers of a module, handed out one by one in registration order."""

    def __init__(self, module):
        self.convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        self.norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]

    def conv(self):
        return self.convs.pop(0)

    def norm(self):
        return self.norms.pop(0)

    def assert_used_up(self):
        """Every layer of the module took part in the computation written out by hand."""
        assert not self.convs and not self.norms, (self.convs, self.norms)


def randomize_norms(module, seed=0):
    """Random BatchNorm affine weights and running statistics, so that every norm shows in eval."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            n = norm.num_features
            norm.weight.copy_(0.5 + torch.rand(n, generator=generator))
            norm.bias.copy_(0.2 * torch.randn(n, generator=generator))
            norm.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
            norm.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return module


def batch_norm(norm, x, training):
    """BatchNorm2d: batch statistics in training, running statistics in evaluation."""
    if training:
        return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
    return F.batch_norm(
        x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
    )
