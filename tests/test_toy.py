"""umlkit.toy (the primer's 2-D toy and sweeps), plus the primer's figures and Dirichlet explorer.

The figure and explorer tests sit here because they draw exactly what umlkit.toy computes.
"""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from umlkit import plots, toy
from umlkit.widgets import dirichlet_explorer


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    return toy.make_moons_data(n=100, seed=0)


def test_moons_are_standardised_and_seeded(data):
    x, y = data
    assert x.shape == (100, 2) and y.shape == (100,)
    torch.testing.assert_close(x.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    assert torch.equal(toy.make_moons_data(n=100, seed=0)[0], x)
    assert not torch.equal(toy.make_moons_data(n=100, seed=1)[0], x)


@pytest.mark.parametrize("features", ["mlp", "rbf"])
@pytest.mark.parametrize("head", ["softmax", "evidential"])
def test_training_fits_and_is_reproducible(data, head, features):
    x, y = data
    run = toy.train_toy(x, y, head=head, features=features, epochs=120, seed=0)
    again = toy.train_toy(x, y, head=head, features=features, epochs=120, seed=0)
    assert run.losses == again.losses
    prediction = toy.toy_predict(run, x)
    assert (prediction["prob"].argmax(1) == y.numpy()).mean() > 0.85
    np.testing.assert_allclose(prediction["prob"].sum(1), 1, rtol=1e-5)
    assert ((prediction["uncertainty"] >= 0) & (prediction["uncertainty"] <= 1)).all()


def test_rbf_network_far_from_the_data_hand_computed(data):
    x, y = data
    far = torch.tensor([[100.0, 100.0]])
    evidential = toy.toy_predict(toy.train_toy(x, y, "evidential", "rbf", epochs=5), far)
    # all RBF features are 0, so are the logits: e = softplus(0) = ln 2 per class,
    # u = K / S = 2 / (2 + 2 ln 2)
    assert evidential["uncertainty"][0] == pytest.approx(2 / (2 + 2 * math.log(2)), rel=1e-5)
    softmax = toy.toy_predict(toy.train_toy(x, y, "softmax", "rbf", epochs=5), far)
    assert softmax["uncertainty"][0] == pytest.approx(1.0)  # uniform: normalised entropy 1


def test_grid_and_distance_table(data):
    x, y = data
    grid = toy.toy_grid(toy.train_toy(x, y, epochs=5), extent=3.0, resolution=7)
    assert grid["xx"].shape == (7, 7) and grid["prob"].shape == (7, 7, 2)
    assert grid["xx"][0, 0] == -3.0 and grid["yy"][-1, 0] == 3.0
    table = toy.uncertainty_by_distance(grid, x, bin_width=0.5)
    assert table["count"].sum() == 49
    assert (np.diff(table["distance"]) > 0).all()


def test_compare_heads_runs_all_four(data):
    x, y = data
    comparison = toy.compare_heads(x, y, epochs=3, resolution=9)
    assert list(comparison["summary"].index) == [
        "mlp + softmax",
        "mlp + evidential",
        "rbf + softmax",
        "rbf + evidential",
    ]
    assert set(comparison["distance"]["model"]) == set(comparison["grids"])


def test_evidence_sweep_hand_computed():
    sweep = toy.evidence_sweep(num_classes=3, max_evidence=3.0, steps=2).set_index(
        ["quantity", "evidence"]
    )["value"]
    # e = (0, 0, 0): u = 1, p_0 = 1/3; e = (3, 0, 0): S = 6, u = 1/2, b_0 = 1/2, p_0 = 2/3
    assert sweep[("uncertainty u", 0.0)] == pytest.approx(1.0)
    assert sweep[("probability p_0", 0.0)] == pytest.approx(1 / 3)
    assert sweep[("uncertainty u", 3.0)] == pytest.approx(0.5)
    assert sweep[("belief b_0", 3.0)] == pytest.approx(0.5)
    assert sweep[("probability p_0", 3.0)] == pytest.approx(2 / 3)


def test_loss_sweep_hand_computed():
    sweep = toy.loss_sweep(num_classes=2, max_evidence=1.0, steps=2)
    at_zero = sweep[sweep["evidence"] == 0].groupby("term")["value"].first()
    # alpha = (1, 1): digamma psi(2) - psi(1) = 1, log ln 2, mse 2 * .25 + 2 * .25 / 3 = 2/3, KL 0
    assert at_zero["digamma"] == pytest.approx(1.0)
    assert at_zero["log"] == pytest.approx(math.log(2))
    assert at_zero["mse"] == pytest.approx(2 / 3)
    assert at_zero["KL"] == pytest.approx(0.0)
    true_class = sweep[(sweep["on"] == "true class") & (sweep["term"] == "KL")]
    assert (true_class["value"] == 0).all()


def test_subjective_logic_table():
    table = toy.subjective_logic_table(torch.tensor([[0.0, 0.0]]), ["zero"])
    # e = ln 2 each, S = 2 + 2 ln 2
    assert table.loc["zero", "strength S"] == pytest.approx(2 + 2 * math.log(2), abs=0.01)
    assert table.loc["zero", "softmax(z)"] == [0.5, 0.5]


def test_bad_input_raises(data):
    x, y = data
    with pytest.raises(ValueError, match="unknown head"):
        toy.train_toy(x, y, head="bayes")
    with pytest.raises(ValueError, match="unknown features"):
        toy.train_toy(x, y, features="cnn")
    with pytest.raises(ValueError, match="epochs must be positive"):
        toy.train_toy(x, y, epochs=0)


# --- the primer's figures (umlkit.plots) and explorer (umlkit.widgets) -------------------------


def test_dirichlet_simplex_figure_and_density():
    fig = plots.dirichlet_simplex([(1, 1, 1), (2, 5, 3), (10, 1, 1)], ncols=2)
    assert len(fig.axes) == 3
    assert fig.axes[1].get_title().startswith("α = (2, 5, 3)")
    # Dir(1, 1, 1) is uniform on the simplex, whose area is 1/2 in (p1, p2): density 2
    points = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    np.testing.assert_allclose(np.exp(plots.dirichlet_log_density((1, 1, 1), points)), 2.0)
    with pytest.raises(ValueError, match="3 positive numbers"):
        plots.dirichlet_simplex([(1, 1)])
    with pytest.raises(ValueError, match="at least one alpha"):
        plots.dirichlet_simplex([])


def test_sweep_and_toy_figures(data):
    x, y = data
    assert len(plots.evidence_curves(toy.evidence_sweep(steps=5)).axes) == 1
    assert len(plots.loss_curves(toy.loss_sweep(steps=5)).axes) == 2
    comparison = toy.compare_heads(x, y, epochs=2, resolution=9)
    fig = plots.toy_uncertainty_maps(comparison["grids"], x.numpy(), y.numpy())
    assert len(fig.axes) == 5  # four maps and the colour bar
    assert len(plots.uncertainty_distance_curves(comparison["distance"]).axes) == 1
    with pytest.raises(ValueError, match="lacks the column"):
        plots.loss_curves(pd.DataFrame({"evidence": [0.0]}))
    with pytest.raises(ValueError, match="at least one grid"):
        plots.toy_uncertainty_maps({}, x.numpy(), y.numpy())


def test_dirichlet_explorer_updates():
    box = dirichlet_explorer((2.0, 2.0, 2.0), dpi=40)
    sliders, picture, readout = box.children[0].children, box.children[1], box.children[2]
    first_picture = picture.value
    assert "S = 6.0" in readout.value and "u = 0.500" in readout.value
    sliders[0].value = 8.0  # alpha = (8, 2, 2): S = 12, u = 1/4
    assert picture.value != first_picture
    assert "S = 12.0" in readout.value and "u = 0.250" in readout.value
    with pytest.raises(ValueError, match="three numbers in"):
        dirichlet_explorer((0.5, 1.0, 1.0))


def test_every_profile_has_toy_settings():
    from umlkit.profiles import PROFILES

    assert set(toy.TOY_SETTINGS) == set(PROFILES)
