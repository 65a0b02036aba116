import math

import pytest
import torch

from centrifuge.models import MODEL_CONFIGS, I3DEncoder, build_model, load_i3d_weights, fold_batchnorm
from centrifuge.models.i3d import I3D_LAYERS, Unit3D, same_padding


def published_i3d_parameter_count() -> int:
    """Parameters of I3D up to Mixed_5c computed from the published channel table alone:
    bias-free convolutions plus BatchNorm scale and shift."""
    kernels = {"Conv3d_1a_7x7": 7 ** 3, "Conv3d_2b_1x1": 1, "Conv3d_2c_3x3": 27}
    total, channels = 0, 3
    for name, spec in I3D_LAYERS.items():
        if spec[0] == "conv":
            total += kernels[name] * channels * spec[1] + 2 * spec[1]
            channels = spec[1]
        elif spec[0] == "mixed":
            b0, b1a, b1b, b2a, b2b, b3b = spec[1]
            total += channels * (b0 + b1a + b2a + b3b) + 27 * (b1a * b1b + b2a * b2b)
            total += 2 * (b0 + b1a + b1b + b2a + b2b + b3b)
            channels = b0 + b1b + b2b + b3b
    return total


def test_full_width_encoder_matches_the_published_architecture():
    encoder = I3DEncoder()
    count = sum(p.numel() for p in encoder.parameters())
    assert count == published_i3d_parameter_count()
    assert 12_000_000 < count < 12_600_000  # I3D is ~12.7M with its 400-way classifier
    assert encoder.out_channels == 1024 and encoder.stride == (8, 32, 32)


@pytest.mark.parametrize("endpoint,channels,stride", [("Mixed_3c", 480, (2, 8, 8)), ("Mixed_4f", 832, (4, 16, 16))])
def test_shallower_endpoints_build_only_what_they_use(endpoint, channels, stride):
    encoder = I3DEncoder(final_endpoint=endpoint)
    names = [n for n, _ in encoder.named_children()]
    assert names[-1] == endpoint and "Mixed_5c" not in names
    assert encoder.out_channels == channels and encoder.stride == stride
    out = encoder(torch.rand(1, 3, 8, 32, 32))[endpoint]
    assert out.shape[1] == channels


def test_tf_same_padding_rule():
    assert same_padding(32, 7, 2) == (2, 3)
    assert same_padding(33, 7, 2) == (3, 3)
    assert same_padding(16, 3, 1) == (1, 1)
    assert same_padding(16, 1, 1) == (0, 0)


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_every_named_config_returns_n_layers_of_the_input_size(name):
    model = build_model(name).eval()
    n = model.num_layers
    sizes = [(1, 1, 1), (5, 17, 23), (8, 32, 32)] if name.startswith("paper") else [(1, 1, 1), (5, 17, 23), (8, 32, 32), (16, 64, 48)]
    with torch.no_grad():
        for t, h, w in sizes:
            out = model(torch.rand(1, 3, t, h, w))
            assert out.shape == (1, n, 3, t, h, w)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("endpoint", ["Mixed_3c", "Mixed_4f", "Mixed_5c"])
def test_every_encoder_depth_builds_a_unet_of_the_input_size(endpoint):
    """Table 4's three encoders; Mixed_3c once failed because the U-Net looked for a Mixed_4f skip."""
    model = build_model("tiny", final_endpoint=endpoint, num_layers=2).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 5, 17, 23))
    assert out.shape == (1, 2, 3, 5, 17, 23)
    assert model.predictor.skips[0] == ("Conv3d_2c_3x3" if endpoint == "Mixed_3c" else "Mixed_3c" if endpoint == "Mixed_4f" else "Mixed_4f")


def test_predictor_corrector_adds_a_correction_to_the_prediction():
    model = build_model("tiny", correction_steps=2).eval()
    with torch.no_grad():
        stages = model(torch.rand(2, 3, 8, 32, 32), return_all=True)
    assert len(stages) == 3
    assert not torch.allclose(stages[0], stages[1])
    assert len(list(model.correctors[0].parameters())) > 0
    assert model.correctors[0].encoder.Conv3d_1a_7x7.conv3d.in_channels == 3 * model.num_layers


@pytest.mark.parametrize("output", ["symmetric", "affine"])
def test_symmetric_outputs_recompose_the_blend(output):
    model = build_model("tiny", output=output).eval()
    video = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        layers = model(video)
    half = model.num_layers // 2
    assert torch.allclose(0.5 * (layers[:, :half] + layers[:, half:]), video.unsqueeze(1).expand(-1, half, -1, -1, -1, -1), atol=1e-5)


def test_affine_output_moves_the_blends_detail_by_a_gain():
    model = build_model("tiny", output="affine").eval()
    video = torch.rand(1, 3, 8, 32, 32)
    half = model.num_layers // 2
    with torch.no_grad():
        # A head that says "gain 1 (tanh of a large number), offset 0" hands the whole blend's detail
        # to one layer: V + V and V − V.
        head = model.predictor.head
        head.weight.zero_()
        head.bias.copy_(torch.tensor([20.0, 0.0, 0.0, 0.0] * half))
        layers = model(video)
        assert torch.allclose(layers[:, 0], 2 * video, atol=1e-5)
        assert torch.allclose(layers[:, half], torch.zeros_like(video), atol=1e-5)
        # However large the head's output, a layer stays within [-2, 3]: the gain and offset are bounded.
        head.bias.copy_(torch.tensor([1e4, 1e4, -1e4, 1e4] * half))
        layers = model(video)
    assert layers.min() >= -2 - 1e-5 and layers.max() <= 3 + 1e-5


def test_input_skip_feeds_the_input_itself_to_the_last_decoder_block():
    model = build_model("tiny", output="affine", input_skip=True, correction_steps=1).eval()
    assert model.predictor.decoder[-1].skip.conv3d.in_channels == 3
    assert model.correctors[0].decoder[-1].skip.conv3d.in_channels == 3 * model.num_layers
    assert build_model("tiny").predictor.decoder[-1].skip is None  # the paper's decoder: nothing finer than stride 2
    with torch.no_grad():
        assert model(torch.rand(1, 3, 5, 20, 28)).shape == (1, model.num_layers, 3, 5, 20, 28)


def test_channel_multiple_rounds_every_inner_channel_count_up_and_leaves_the_default_alone():
    def inner_channels(model):
        convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
        head = model.predictor.head
        return {c for m in convs for c in (m.in_channels, m.out_channels)} - {3, head.out_channels}

    plain = build_model("small", width=0.31, output="affine", input_skip=True)
    assert any(c % 8 for c in inner_channels(plain))  # the bundled scaling has odd counts (5, 79, 159, ...)
    rounded = build_model("small", width=0.31, output="affine", input_skip=True, channel_multiple=8).eval()
    assert inner_channels(rounded) and all(c % 8 == 0 for c in inner_channels(rounded))
    assert rounded.predictor.encoder.endpoint_channels["Mixed_5c"] >= plain.predictor.encoder.endpoint_channels["Mixed_5c"]
    assert type(rounded.config).from_dict(rounded.config.to_dict()) == rounded.config  # saved beside the weights
    with torch.no_grad():
        assert rounded(torch.rand(1, 3, 8, 32, 32)).shape == (1, 4, 3, 8, 32, 32)
    with pytest.raises(ValueError):
        build_model("tiny", channel_multiple=0)


def test_eval_mode_batchnorm_uses_running_statistics():
    torch.manual_seed(0)
    model = build_model("tiny")
    model.train()
    for _ in range(3):  # move the running statistics away from their initial values
        model(torch.rand(4, 3, 8, 32, 32))
    model.eval()
    x = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        alone = model(x)
        in_batch = model(torch.cat([x, torch.rand(3, 3, 8, 32, 32) * 5]))[:1]
    assert torch.allclose(alone, in_batch, atol=1e-5)  # no batch statistics in eval mode
    model.train()
    with torch.no_grad():
        train_alone = model(torch.cat([x, x]))[:1]
        train_mixed = model(torch.cat([x, torch.rand(1, 3, 8, 32, 32) * 5]))[:1]
    assert not torch.allclose(train_alone, train_mixed, atol=1e-3)


def test_state_dict_of_the_common_pytorch_port_loads_into_the_encoder():
    """A state dict named as the popular port saves it (DataParallel prefix, classifier, no BN
    scale as in DeepMind's weights) maps onto our encoder tensor for tensor."""
    torch.manual_seed(0)
    reference = I3DEncoder(final_endpoint="Mixed_5c", width=0.25)
    port = {}
    for key, value in reference.state_dict().items():
        if key.endswith(".bn.weight") or key.endswith("num_batches_tracked"):
            continue
        port[f"module.{key}"] = torch.randn_like(value) if value.is_floating_point() else value
    port["module.logits.conv3d.weight"] = torch.randn(400, 256, 1, 1, 1)
    port["module.logits.conv3d.bias"] = torch.randn(400)
    encoder = I3DEncoder(final_endpoint="Mixed_5c", width=0.25)
    unused = load_i3d_weights(encoder, port)
    assert sorted(unused) == ["module.logits.conv3d.bias", "module.logits.conv3d.weight"]
    state = encoder.state_dict()
    for key, value in port.items():
        if "logits" not in key:
            assert torch.equal(state[key[len("module."):]], value), key
    assert torch.equal(state["Mixed_3b.b0.bn.weight"], torch.ones_like(state["Mixed_3b.b0.bn.weight"]))
    assert "Conv3d_1a_7x7.conv3d.weight" in state and "Mixed_3b.b1b.conv3d.weight" in state

    shallow = I3DEncoder(final_endpoint="Mixed_4f", width=0.25)
    unused = load_i3d_weights(shallow, port)  # deeper endpoints are simply not used
    assert any(k.startswith("module.Mixed_5c") for k in unused)


def test_wrong_shapes_are_refused():
    encoder = I3DEncoder(width=0.25)
    bad = {k: torch.zeros(3) for k in encoder.state_dict() if k.endswith("conv3d.weight")}
    with pytest.raises(ValueError, match="shape"):
        load_i3d_weights(encoder, bad)


def test_folding_batchnorm_into_the_convolutions_keeps_the_outputs():
    torch.manual_seed(0)
    model = build_model("tiny", correction_steps=1)
    for module in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())  # the original is untouched
    video = torch.rand(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(folded(video), model(video), atol=1e-4)


def test_convolutions_with_a_kernel_larger_than_their_input_run_in_fp32_under_cpu_autocast():
    """oneDNN's bf16 weight gradient for such tiny maps was now and then non-finite (~3 % of steps)."""
    unit = Unit3D(4, 4, kernel=(3, 3, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tiny = unit(torch.rand(2, 4, 2, 2, 2))
        large = unit(torch.rand(2, 4, 4, 4, 4))
    assert tiny.dtype == torch.float32 and large.dtype == torch.bfloat16
    tiny.sum().backward()
    assert torch.isfinite(unit.conv3d.weight.grad).all()


def _sliding(texture: torch.Tensor, velocity: tuple[int, int], frames: int, size: int) -> torch.Tensor:
    """``(3, T, size, size)``: a window on ``texture`` whose content moves ``velocity`` (x, y) px per frame."""
    reach = 2 * frames
    return torch.stack([texture[:, reach - velocity[1] * t : reach - velocity[1] * t + size,
                                reach - velocity[0] * t : reach - velocity[0] * t + size] for t in range(frames)], dim=1)


def test_motion_average_along_a_layers_velocity_gives_that_layer_back():
    from centrifuge.models.centrifuge import motion_averages, velocity_hypotheses

    clip = _sliding(torch.rand(3, 64, 64), (2, -1), 8, 24).unsqueeze(0)
    averages = motion_averages(clip)
    assert averages.shape == (1, len(velocity_hypotheses()), 3, 8, 24, 24)
    along = averages[0, velocity_hypotheses().index((2, -1))]
    # Away from the clip's ends and the frame's edges, where the shifted frames are all inside.
    assert torch.allclose(along[:, 2:6, 4:20, 4:20], clip[0, :, 2:6, 4:20, 4:20], atol=1e-6)
    still = averages[0, velocity_hypotheses().index((0, 0))]
    assert (still - clip[0]).abs()[:, 2:6, 4:20, 4:20].mean() > 0.1  # the wrong velocity smears it


def test_motion_energy_peaks_at_the_velocities_in_the_blend():
    from centrifuge.models.centrifuge import motion_averages, motion_energy, velocity_hypotheses

    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 66, 66), 3, stride=1)  # textures with some spatial correlation
    first, second = _sliding(smooth[0], (2, 0), 8, 32), _sliding(smooth[1], (-1, 1), 8, 32)
    blend = (0.5 * (first + second)).unsqueeze(0)
    energy = motion_energy(motion_averages(blend.mean(dim=1, keepdim=True)))[0].mean(dim=(1, 2, 3))
    top_two = {velocity_hypotheses()[i] for i in energy.topk(2).indices.tolist()}
    assert top_two == {(2, 0), (-1, 1)}


def test_motion_output_separates_two_sliding_layers_once_it_follows_one_of_them():
    from centrifuge.evaluate import other_scene_share
    from centrifuge.losses import identity_outputs, pit_loss
    from centrifuge.models.centrifuge import velocity_hypotheses

    model = build_model("tiny", output="motion", num_layers=2).eval()
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 66, 66), 3, stride=1)
    layers = torch.stack([_sliding(smooth[0], (2, 0), 8, 32), _sliding(smooth[1], (-1, 1), 8, 32)]).unsqueeze(0)
    blend = layers.mean(dim=1)
    with torch.no_grad():
        head = model.predictor.head
        head.weight.zero_()
        head.bias.zero_()
        head.bias[velocity_hypotheses().index((2, 0))] = 50.0  # a head that follows the first layer's motion everywhere
        k = len(velocity_hypotheses())
        head.bias[k] = 20.0  # at gain 2: M is half the layer plus half the other, smeared
        head.bias[k + 1 : k + 4] = math.atanh(-0.5)  # less the other's mean: these textures' 0.5
        outputs = model(blend)
    assert torch.allclose(outputs.mean(dim=1), blend, atol=1e-5)  # the pair recomposes the blend
    result = pit_loss(outputs, layers)
    assert result.assignment[0].tolist() == [0, 1]
    assert float(other_scene_share(outputs, layers)) < 0.25  # 0.5: not separated
    assert float(result.loss) < 0.8 * float(pit_loss(identity_outputs(blend), layers).loss)


def test_clip_statistics_give_each_channels_mean_spread_and_range():
    from centrifuge.models.centrifuge import clip_statistics

    video = torch.zeros(2, 3, 4, 16, 16)
    video[0, 0] = 0.75  # a flat colour: mean, minimum and maximum equal, no spread
    video[1, 1, :, :8] = 1.0  # half of the frame white in green
    mean, spread, low, high = clip_statistics(video).view(2, 4, 3).unbind(1)  # of the input in [-1, 1]
    mean, spread, low, high = mean * 0.5 + 0.5, spread * 0.5, low * 0.5 + 0.5, high * 0.5 + 0.5  # back to [0, 1] units
    assert torch.allclose(mean[0], torch.tensor([0.75, 0.0, 0.0])) and torch.allclose(spread[0], torch.zeros(3), atol=1e-6)
    assert torch.allclose(low[0], mean[0]) and torch.allclose(high[0], mean[0])
    assert torch.allclose(mean[1], torch.tensor([0.0, 0.5, 0.0])) and float(low[1, 1]) == 0.0 and float(high[1, 1]) == 1.0


def test_a_model_with_clip_statistics_starts_as_the_model_without_them_and_then_sees_the_colour_range():
    torch.manual_seed(0)
    plain = build_model("tiny", output="affine").eval()
    model = build_model("tiny", output="affine", clip_statistics=True).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("statistics_head.") for k in missing)
    video = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(video), plain(video))  # the branch's last layer starts at zero
        torch.nn.init.normal_(model.statistics_head[-1].weight)
        # Once the branch's last layer is not zero, its per-clip bias moves the layers away from the
        # plain model's on the same clip.
        shifted = video * 0.5 + 0.25
        moved = model(shifted) - plain(shifted)
    assert float(moved.abs().mean()) > 1e-3


def test_the_clip_statistics_branch_learns_a_flat_lights_colour_from_the_blends_range(monkeypatch):
    """A blend of a random clip with a flat colour c: the layer that is the light is c everywhere.
    With the predictor frozen, only the branch trains. Reading c off the blend's range, it ends far
    below the same branch fed constant statistics, which can learn only one bias for every clip."""
    import centrifuge.models.centrifuge as centrifuge_module
    from centrifuge.losses import pit_loss

    def final_loss() -> float:
        torch.manual_seed(0)
        model = build_model("tiny", output="affine", clip_statistics=True, num_layers=2)
        model.predictor.requires_grad_(False).eval()
        optimiser = torch.optim.Adam(model.statistics_head.parameters(), lr=1e-2)
        losses = []
        for _ in range(60):
            clips = torch.rand(8, 3, 4, 16, 16)
            layers = torch.stack([clips, torch.rand(8, 3, 1, 1, 1).expand_as(clips)], 1)
            loss = pit_loss(model(layers.mean(1)), layers).per_example.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return sum(losses[-10:]) / 10

    reading = final_loss()
    monkeypatch.setattr(centrifuge_module, "clip_statistics", lambda video: torch.zeros(video.shape[0], 12))
    blind = final_loss()
    assert reading < 0.7 * blind, (reading, blind)


def test_a_light_gate_applies_the_colour_range_bias_only_as_far_as_the_blend_holds_a_light():
    torch.manual_seed(0)
    # The direct head and no corrector keep the layers linear in the bias, so shares are exact.
    options = dict(output="direct", correction_steps=0, clip_statistics=True)
    model = build_model("tiny", light_gate=True, **options).eval()
    ungated = build_model("tiny", **options).eval()
    video = torch.rand(2, 3, 8, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        torch.nn.init.normal_(model.statistics_head[-1].weight)
        ungated.load_state_dict(model.state_dict(), strict=False)
        told = model(video, light=torch.tensor([1.0, 0.0]))
        full, none = ungated(video), model(video, light=torch.zeros(2))
        believed = model(video)
        probability = torch.sigmoid(model.light_logit)
    assert torch.allclose(told[0], full[0], atol=1e-6) and torch.allclose(told[1], none[1], atol=1e-6)  # gate 1: the whole bias; 0: none
    assert float((full - none).abs().mean()) > 1e-3
    # Left to itself, the model gates the bias by its light head's probability.
    share = (believed - none).flatten(1).norm(dim=1) / (full - none).flatten(1).norm(dim=1)
    assert torch.allclose(share, probability, atol=1e-4), (share, probability)
    with pytest.raises(ValueError, match="clip_statistics"):
        build_model("tiny", output="affine", light_gate=True)
