"""umlkit.models: shapes of every model and ablation, gradients, configs, errors, building blocks."""

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

from umlkit.losses import uml_objective
from umlkit.models import (
    MODEL_NAMES,
    ConvBlock,
    Decoder,
    Encoder,
    ModelConfig,
    UNet,
    build_model,
    load_encoder_weights,
    model_from_config,
)

B, H, W = 2, 32, 32
K, C = 2, 3  # three pixel classes so that class and pixel dimensions cannot be confused

#: (name, options) of every configuration, with what its output has.
CONFIGURATIONS = [
    ("uml", {}),
    ("uml", {"navigator": False}),
    ("uml", {"instructor": False}),
    ("uml", {"head": "softmax"}),
    ("uml", {"navigator": False, "instructor": False}),
    ("uml", {"depth": 3, "mixer_width": 6, "dropout": 0.0}),
    ("uml", {"evidence": "exp"}),
    ("uml", {"navigate_final": True}),
    ("uml2024", {}),
    ("uml2024", {"navigator": False}),
    ("uml2024", {"instructor": False}),
    ("unet", {}),
    ("classifier", {}),
    ("multitask", {}),
    ("multitask", {"head": "evidential"}),
]


def _forward(name, options, width=4, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, num_classes=K, num_seg_classes=C, width=width, **options)
    x = torch.rand(B, 3, H, W)
    return model, model(x)


@pytest.mark.parametrize(("name", "options"), CONFIGURATIONS)
def test_output_shapes_of_every_model_and_ablation(name, options):
    model, out = _forward(name, options)
    has_class = name != "unet"
    has_seg = name != "classifier"
    uml = name.startswith("uml")
    evidential = options.get("head", "evidential" if uml else "softmax") == "evidential"
    if has_class:
        assert out.class_prob.shape == (B, K)
        torch.testing.assert_close(out.class_prob.sum(1), torch.ones(B))
    else:
        assert out.class_prob is None and out.class_alpha is None
    if has_class and evidential:
        assert out.class_alpha.shape == (B, K) and bool((out.class_alpha >= 1).all())
        assert out.class_uncertainty.shape == (B, 1)
        strength = out.class_alpha.sum(1, keepdim=True)
        torch.testing.assert_close(out.class_uncertainty, K / strength)  # u = K / S
        torch.testing.assert_close(out.class_prob, out.class_alpha / strength)  # p = alpha / S
        assert out.class_logits is None
    elif has_class:
        assert out.class_alpha is None and out.class_uncertainty is None
        torch.testing.assert_close(out.class_prob, F.softmax(out.class_logits, 1))
    if has_seg:
        assert out.seg_logits.shape == (B, C, H, W)
        torch.testing.assert_close(out.seg_prob, F.softmax(out.seg_logits, 1))
        # UML 2023 decodes to cat(skip, up): twice the width at full resolution.
        assert out.features.shape == (B, 8 if name == "uml" else 4, H, W)
    else:
        assert out.seg_logits is None and out.features is None
    if uml:
        assert out.pixel_alpha.shape == (B, C, H, W) and bool((out.pixel_alpha >= 1).all())
        assert out.pixel_uncertainty.shape == (B, 1, H, W)
        torch.testing.assert_close(out.pixel_uncertainty, C / out.pixel_alpha.sum(1, keepdim=True))
    if name == "uml":  # side outputs at strides 2, 4, 8 (depth 4), upsampled
        assert all(side.shape == (B, C, H, W) for side in out.side_logits)
        assert len(out.side_logits) == options.get("depth", 4) - 1
    if not uml:
        assert out.pixel_alpha is None and out.pixel_uncertainty is None
    if name == "uml" and options.get("navigator", True):
        assert out.reliable_mask.shape == (B, C, H, W)
    if name == "uml2024" and options.get("navigator", True):
        assert out.reliable_mask.shape == (B, 1, H, W)
        assert bool((out.reliable_mask >= 0).all()) and bool((out.reliable_mask <= 1).all())
    if not options.get("navigator", True) or not uml:
        assert out.reliable_mask is None
    if name == "uml2024":
        assert len(out.mutual_alphas) == 3  # strides 8, 4, 2 (the full-res one is pixel_alpha)
        assert all(a.shape == (B, C, H, W) for a in out.mutual_alphas)
    else:
        assert out.mutual_alphas is None
    assert model.config.name == name


def _biases_before_batch_norm(model: torch.nn.Module) -> list[str]:
    """Names of the convolution biases that a batch norm follows directly in a ``Sequential``.

    In training mode batch norm subtracts each channel's batch mean, so a constant added to a
    channel just before it cancels: the gradient of such a bias is zero by construction. A
    computed gradient holds only rounding noise there (about 1e-9 with some CPU kernels, exactly
    0 with others), so these parameters are checked as zero, never as non-zero.
    """
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (name, layer), (_, following) in zip(children[:-1], children[1:], strict=True):
                if (
                    isinstance(layer, torch.nn.Conv2d)
                    and layer.bias is not None
                    and isinstance(following, torch.nn.BatchNorm2d)
                ):
                    names.append(f"{prefix}.{name}.bias")
    return names


def test_a_bias_before_training_mode_batch_norm_has_no_gradient_by_construction():
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).double()
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    shifted = layers(x)
    with torch.no_grad():
        layers[0].bias += 10.0  # a different bias gives the same output ...
    torch.testing.assert_close(layers(x), shifted)
    layers(x).square().sum().backward()  # ... so the gradient of the bias is zero
    assert float(layers[0].bias.grad.abs().max()) < 1e-9 * float(layers[0].weight.grad.abs().max())
    assert _biases_before_batch_norm(layers) == [".0.bias"]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("uml", {"navigate_final": True}),
        ("uml2024", {}),
        ("uml", {"navigator": False}),
        ("uml", {"head": "softmax", "navigate_final": True}),
    ],
)
def test_every_parameter_receives_a_gradient(name, options):
    model, out = _forward(name, options)
    mask = torch.randint(0, C, (B, H, W))
    label = torch.tensor([0, 1])
    # epoch 1 of 2: the annealed KL term is on, so every evidential path is trained.
    loss, _ = uml_objective(out, mask, label, epoch=1, anneal_epochs=2)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(bool(torch.isfinite(g).all()) for g in grads.values())
    structural = set(_biases_before_batch_norm(model))
    assert structural <= grads.keys()
    if name == "uml2024":  # the attention gate: ReLU -> Conv2d(bias) -> BatchNorm2d
        assert "skip_navigators.2.gate.1.bias" in structural
    scale = max(float(g.abs().max()) for g in grads.values())
    leaking = [n for n in structural if float(grads[n].abs().max()) > 1e-5 * scale]
    assert not leaking, f"biases before batch norm with a gradient beyond rounding: {leaking}"
    zero = [n for n, g in grads.items() if n not in structural and not float(g.abs().max()) > 0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


def test_a_few_adam_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("uml", width=4)
    x = torch.rand(4, 3, H, W)
    mask = (torch.rand(4, H, W) > 0.6).long()
    label = torch.tensor([0, 1, 0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = uml_objective(model(x), mask, label, epoch=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_rebuilding_from_the_stored_config_reproduces_the_outputs(name):
    model, _ = _forward(name, {})
    model.eval()
    clone = model_from_config(model.config.to_dict())
    clone.load_state_dict(model.state_dict())
    clone.eval()
    x = torch.rand(B, 3, H, W)
    a, b = model(x), clone(x)
    for field in ("class_prob", "seg_logits", "pixel_alpha"):
        if getattr(a, field) is not None:
            torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)


def test_config_resolves_the_head_per_model():
    assert ModelConfig(name="uml").head == "evidential"
    assert ModelConfig(name="multitask").head == "softmax"
    assert ModelConfig.from_dict(ModelConfig(name="unet", width=8).to_dict()).width == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "resnet"}, "unknown model name 'resnet'"),
        ({"name": "uml", "width": 0}, "width must be a positive integer, got 0"),
        ({"name": "uml", "width": -4}, "width must be a positive integer"),
        ({"name": "uml", "width": 2.5}, "width must be a positive integer, got 2.5"),
        ({"name": "uml", "width": True}, "width must be a positive integer"),
        ({"name": "uml", "num_classes": 1}, "num_classes must be at least 2"),
        ({"name": "uml", "depth": 1}, "depth must be at least 2"),
        ({"name": "uml", "head": "sigmoid"}, "head must be one of"),
        ({"name": "uml", "evidence": "square"}, "evidence must be one of"),
        ({"name": "unet", "upsample": "nearest"}, "upsample must be one of"),
        ({"name": "uml", "upsample": "transpose"}, "model 'uml' has no option"),
        ({"name": "uml", "mixer_width": 5}, "mixer_width must be even"),
        ({"name": "uml", "dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
        ({"name": "uml2024", "navigate_final": True}, "model 'uml2024' has no option"),
        ({"name": "uml", "navigator": "yes"}, "navigator must be True or False"),
        ({"name": "unet", "navigator": False}, "model 'unet' has no option"),
        ({"name": "unet", "dropout": 0.1}, "model 'unet' has no option"),
    ],
)
def test_bad_configurations_are_rejected_with_a_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_unknown_fields_in_a_stored_config_are_rejected():
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({"name": "uml", "colour": "red"})


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 3, 30, 32), "divisible by 8"),
        ((1, 3, 32, 36), "divisible by 8"),
        ((1, 1, 32, 32), "expected 3 input channels, got 1"),
        ((3, 32, 32), r"shape \(B, C, H, W\)"),
    ],
)
def test_bad_inputs_are_rejected_with_a_message(name, shape, match):
    model = build_model(name, width=4)
    with pytest.raises(ValueError, match=match):
        model(torch.rand(shape))


def test_depth_sets_the_divisibility_of_the_input():
    model = build_model("uml", width=4, depth=3)
    assert model(torch.rand(1, 3, 20, 20)).seg_logits.shape == (1, 2, 20, 20)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 3, 18, 20))


def test_conv_block_keeps_the_size_and_changes_the_channels():
    assert ConvBlock(3, 5)(torch.rand(2, 3, 8, 8)).shape == (2, 5, 8, 8)


def test_encoder_gives_features_at_strides_1_2_4_8():
    encoder = Encoder(3, width=4, depth=4)
    features = encoder(torch.rand(2, 3, 32, 32))
    assert [tuple(f.shape) for f in features] == [
        (2, 4, 32, 32),
        (2, 8, 16, 16),
        (2, 16, 8, 8),
        (2, 32, 4, 4),
    ]
    assert encoder.channels == [4, 8, 16, 32]


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
def test_decoder_returns_the_full_resolution_feature_and_intermediates(upsample):
    features = Encoder(3, width=4)(torch.rand(2, 3, 32, 32))
    decoder = Decoder(width=4, upsample=upsample)
    out, intermediate = decoder(features, return_intermediate=True)
    assert out.shape == (2, 4, 32, 32)
    assert [tuple(f.shape[1:]) for f in intermediate] == [(16, 8, 8), (8, 16, 16), (4, 32, 32)]
    assert intermediate[-1] is out
    with pytest.raises(ValueError, match="expected 4 feature maps, got 3"):
        decoder(features[:3])
    with pytest.raises(ValueError, match="upsample must be one of"):
        Decoder(4, upsample="nearest")


def test_unet_output_and_bottleneck_hook():
    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x

    unet = UNet(3, num_seg_classes=2, width=4, bottleneck=Recorder())
    out = unet(torch.rand(2, 3, 16, 16))
    assert out.seg_logits.shape == (2, 2, 16, 16) and out.features.shape == (2, 4, 16, 16)
    torch.testing.assert_close(out.seg_prob.sum(1), torch.ones(2, 16, 16))
    assert calls == [(2, 32, 2, 2)]


def test_encoder_weights_load_from_a_local_checkpoint(tmp_path):
    source = Encoder(3, width=4)
    path = tmp_path / "encoder.pt"
    torch.save(source.state_dict(), path)
    model = build_model("uml", width=4, encoder_weights=str(path))
    for encoder in (model.seg_encoder, model.cls_encoder):
        for key, value in source.state_dict().items():
            torch.testing.assert_close(encoder.state_dict()[key], value)
    with pytest.raises(ValueError, match="does not fit an Encoder"):
        load_encoder_weights(Encoder(3, width=8), path)
    with pytest.raises(FileNotFoundError, match="missing.pt not found"):
        build_model("multitask", width=4, encoder_weights=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("channels", [4, 8, 16, 24])
def test_batch_norm_equals_torch_batch_norm_on_several_threads(channels):
    from umlkit.models.blocks import BatchNorm2d

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the one-thread path only runs when torch has several threads
    try:
        generator = torch.Generator().manual_seed(channels)
        x = 3 * torch.randn(4, channels, 6, 5, generator=generator) + 1
        x = x.contiguous(memory_format=torch.channels_last)
        upstream = torch.randn(4, channels, 6, 5, generator=generator)
        ours, reference = BatchNorm2d(channels), torch.nn.BatchNorm2d(channels)
        with torch.no_grad():
            for layer in (ours, reference):
                layer.weight.copy_(torch.linspace(0.5, 2.0, channels))
                layer.bias.copy_(torch.linspace(-1.0, 1.0, channels))
        results = []
        for layer in (ours, reference):
            inputs = x.clone().requires_grad_()
            for _ in range(2):  # twice: the running statistics are updated from their last values
                output = layer(inputs)
            output.backward(upstream)
            results.append((output, inputs.grad, layer.weight.grad, layer.bias.grad))
            assert torch.get_num_threads() == 2
        for ours_value, reference_value in zip(*results, strict=True):
            torch.testing.assert_close(ours_value, reference_value, rtol=1e-5, atol=1e-5)
        assert results[0][0].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ours.running_mean, reference.running_mean)
        torch.testing.assert_close(ours.running_var, reference.running_var)
        assert ours.num_batches_tracked.item() == reference.num_batches_tracked.item() == 2
        assert ours.state_dict().keys() == reference.state_dict().keys()
    finally:
        torch.set_num_threads(threads)


def test_batch_norm_rejects_input_without_a_channel_map():
    from umlkit.models.blocks import BatchNorm2d

    with pytest.raises(ValueError, match="expected 4D input"):
        BatchNorm2d(8)(torch.ones(8, 8))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_compiles_to_one_graph_without_breaks(name):
    # Two threads and width 4 put umlkit's batch-norm fast path in reach; under torch.compile it
    # and dirichlet's value checks must step aside for a single graph.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch._dynamo.reset()
        model = build_model(name, width=4, depth=2)
        explanation = torch._dynamo.explain(model)(torch.rand(2, 3, 8, 8))
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
