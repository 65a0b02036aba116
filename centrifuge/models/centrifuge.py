"""The centrifuge networks: the predictor and the predictor–corrector (section 3.2, appendix A).

Layout at the boundary: a video batch is ``(B, 3, T, H, W)`` float in [0, 1]; the output is
``(B, n, 3, T, H, W)``, n layer videos of the input's exact size. Inputs whose sizes are not
multiples of the network's stride are padded (edge replication) and the outputs cropped back, so any
T, H, W ≥ 1 works.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import checked_fields
from .i3d import FINAL_ENDPOINTS
from .unet import UNet

OUTPUT_MODES = ("direct", "residual", "symmetric", "affine", "motion")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved beside its weights.

    Attributes:
        num_layers: n, the number of output videos (the paper: 2, 4, 8 or 12; Table 2).
        final_endpoint: the encoder's depth, ``Mixed_3c`` / ``Mixed_4f`` / ``Mixed_5c`` (Table 4).
        width: channel multiplier of encoder and decoder (1.0 is the published I3D).
        correction_steps: corrector U-Nets stacked after the predictor (the paper used 1; 0 is the
            plain predictor; more is the paper's future work).
        output: how the head's channels become layers. ``direct``: the head's output is the layer
            (the paper). ``residual``: the layer is the blend plus the head's output. ``symmetric``:
            the head predicts n/2 differences D and the layers are V + D and V − D, which recompose
            the blend exactly when α = 0.5. ``affine``: like ``symmetric``, but the difference is a
            per-pixel linear function of the blend, D = tanh(g)·V + tanh(B), with the head predicting
            one gain g (shared by the colour channels) and an offset B per colour channel.
            Fine detail then reaches a layer by the network deciding, region by region, whose it is
            (g near ±1 where one scene owns the edges, 0 where neither does), not by drawing it from
            coarse features: a quarter-width decoder has 8 channels at full resolution, too few to
            draw edges, and the other heads end up moving brightness between the layers.
            ``motion`` (not in the paper): each layer follows its own motion. The blend is averaged
            over ``2·MOTION_RADIUS + 1`` frames along each of K whole-pixel velocities
            (``motion_averages``): a layer moving with that velocity stays sharp, one moving
            otherwise is smeared. Per pixel, a softmax over the K averages picks M; its logits are
            β·``motion_energy`` (β learnt, starting at ``MOTION_ENERGY_SCALE``: "the sharpest
            motion") plus the head's. One layer of each pair is (1 + tanh(g))·M + tanh(B), its
            partner what the blend leaves (2V minus it; exact for α = 0.5), so the network only has
            to find one velocity present in a region. The averaging removes the other layer's fine
            detail at full resolution, which the decoder cannot draw from coarse features. At CPU
            scale it did not beat ``affine`` (docs/results.md).
        input_skip: the decoder's last block also sees the input at full resolution (not in the paper,
            whose finest skip is at stride 2).
        clip_statistics: the head also gets the blend's colour range (not in the paper): per clip
            and colour channel, the mean, standard deviation, minimum and maximum of the blend
            averaged over 4×4 pixels, mapped by a small MLP to a bias on every head channel. A flat
            light of colour c turns a video's range [0, 1] into [c/2, (1 + c)/2], which names c;
            the convolutions, which see the blend region by region, leave this clue unused (the
            bundled model leaves half of a video's detail under flat black). The MLP's last layer
            starts at zero, so a model gains the option and starts as it was (``init_weights``).
        light_gate: with ``clip_statistics``, the range's bias is applied only as far as a second
            small MLP on the same statistics says the blend holds a light (a layer with no detail
            of its own). Training shows that MLP the answer (:func:`light_labels` of the true
            layers) and gates the bias with it; separating, the MLP's probability gates it. Why:
            the range names a light's colour, but applied to two videos the same bias cost real
            pairs 0.03 of the ratio (session 37): the bias learnt on the training scenes' blends
            does not carry to scenes never seen.
        channel_multiple: scaled channel counts rounded up to a multiple of this (8 for GPU
            training in bf16, whose tensor cores work in groups of 8 channels; 1 keeps the exact
            ``width`` scaling that the bundled model was built with).
    """

    num_layers: int = 4
    final_endpoint: str = "Mixed_5c"
    width: float = 1.0
    correction_steps: int = 1
    output: str = "direct"
    input_skip: bool = False
    channel_multiple: int = 1
    clip_statistics: bool = False
    light_gate: bool = False

    def __post_init__(self):
        if self.num_layers < 2:
            raise ValueError("num_layers must be at least 2")
        if self.final_endpoint not in FINAL_ENDPOINTS:
            raise ValueError(f"final_endpoint must be one of {FINAL_ENDPOINTS}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}")
        if self.output in ("symmetric", "affine", "motion") and self.num_layers % 2:
            raise ValueError(f"the {self.output} output needs an even number of layers")
        if self.width <= 0 or self.correction_steps < 0:
            raise ValueError("width must be positive and correction_steps non-negative")
        if self.channel_multiple < 1:
            raise ValueError("channel_multiple must be at least 1")
        if self.light_gate and not self.clip_statistics:
            raise ValueError("light_gate gates the clip_statistics branch: set clip_statistics too")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


MODEL_CONFIGS: dict[str, ModelConfig] = {
    # The paper's best model: full I3D to Mixed_5c, 4 layers, predictor–corrector.
    "paper": ModelConfig(num_layers=4, final_endpoint="Mixed_5c", width=1.0, correction_steps=1),
    # The paper's basic predictor (Table 1): 2 layers, no corrector.
    "paper-predictor": ModelConfig(num_layers=2, final_endpoint="Mixed_5c", width=1.0, correction_steps=0),
    # Models that train on a 2-core CPU.
    "small": ModelConfig(num_layers=4, final_endpoint="Mixed_5c", width=0.25, correction_steps=0, output="residual"),
    "small-corrector": ModelConfig(num_layers=4, final_endpoint="Mixed_5c", width=0.25, correction_steps=1, output="residual"),
    "tiny": ModelConfig(num_layers=4, final_endpoint="Mixed_4f", width=0.125, correction_steps=0, output="residual"),
}


CLIP_STATISTICS = 12  # mean, standard deviation, minimum, maximum per colour channel
STATISTICS_HIDDEN = 32


def clip_statistics(video: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` → ``(B, 12)``: per colour channel, the mean, standard deviation,
    minimum and maximum of the clip averaged over 4×4 pixels (so that a few noisy pixels do not set
    the range), centred on 0 like the network's input."""
    pooled = F.avg_pool3d(video, (1, 4, 4), ceil_mode=True) if min(video.shape[-2:]) >= 4 else video
    flat = pooled.flatten(2) * 2 - 1
    return torch.cat([flat.mean(2), flat.std(2), flat.amin(2), flat.amax(2)], dim=1)


ENERGY_WINDOW = 5
MOTION_RADIUS = 2
MAX_SPEED = 2
MOTION_ENERGY_SCALE = 4.0


def velocity_hypotheses(max_speed: int = MAX_SPEED) -> list[tuple[int, int]]:
    """Every whole-pixel velocity (x, y) with both components within ±``max_speed`` px per frame."""
    return [(vx, vy) for vy in range(-max_speed, max_speed + 1) for vx in range(-max_speed, max_speed + 1)]


def motion_averages(video: torch.Tensor, max_speed: int = MAX_SPEED, radius: int = MOTION_RADIUS) -> torch.Tensor:
    """For every velocity of ``velocity_hypotheses``, the mean of ``video`` over frames t−radius …
    t+radius, each shifted back along that velocity: what a layer moving so looks like with
    everything moving otherwise smeared out. Frames past the clip's ends repeat the end frames; pixels
    past the edge repeat the edge.

    Args:
        video: ``(B, C, T, H, W)``.
    Returns:
        ``(B, K, C, T, H, W)``, K = (2·max_speed + 1)².
    """
    _, _, t, h, w = video.shape
    reach = max_speed * radius
    padded = F.pad(video, (reach, reach, reach, reach, 0, 0), mode="replicate")
    hypotheses = velocity_hypotheses(max_speed)
    sums: list[torch.Tensor] = []
    for tau in range(-radius, radius + 1):
        frames = padded[:, :, (torch.arange(t, device=video.device) + tau).clamp(0, t - 1)]
        for i, (vx, vy) in enumerate(hypotheses):
            top, left = reach + vy * tau, reach + vx * tau
            shifted = frames[..., top : top + h, left : left + w]
            if len(sums) <= i:
                sums.append(shifted.clone())
            else:
                sums[i] += shifted
    return torch.stack(sums, dim=1) / (2 * radius + 1)


def motion_energy(averages: torch.Tensor, window: int = ENERGY_WINDOW) -> torch.Tensor:
    """How much fine detail each motion average keeps, per pixel: ``(B, K, C, T, H, W)`` (C = 1, the
    grey level, is enough and 3× cheaper) → ``(B, K, T, H, W)``, the log of the local mean (over
    ``window``×``window`` pixels) of its squared spatial gradient, less its mean over the K
    velocities. A layer moving with velocity k keeps its edges in average k and loses them in the
    others, so the peaks say which velocities are present where: a cue the networks here did not
    learn to compute from the blend in thousands of steps, even on pure translations
    (docs/results.md)."""
    b, k, c, t, h, w = averages.shape
    dx = F.pad(averages[..., :, 1:] - averages[..., :, :-1], (0, 1))
    dy = F.pad(averages[..., 1:, :] - averages[..., :-1, :], (0, 0, 0, 1))
    squared = (dx.square() + dy.square()).mean(dim=2).reshape(b * k * t, 1, h, w)
    # Separable box filter; the zero padding's dimming at the edges is the same for every velocity
    # and cancels in the normalisation below.
    energy = F.avg_pool2d(squared, (1, window), stride=1, padding=(0, window // 2))
    energy = F.avg_pool2d(energy, (window, 1), stride=1, padding=(window // 2, 0))
    log_energy = torch.log(energy.view(b, k, t, h, w) + 1e-6)
    return log_energy - log_energy.mean(dim=1, keepdim=True)


def _replicate_pad(x: torch.Tensor, multiple: tuple[int, int, int]) -> torch.Tensor:
    """Pad ``(B, C, T, H, W)`` at the end of each dimension up to a multiple, repeating the edge."""
    pads = []
    for size, m in zip(reversed(x.shape[2:]), reversed(multiple)):
        pads += [0, (-size) % m]
    if not any(pads):
        return x
    # Edge replication of any amount (F.pad's 'replicate' also works when the pad exceeds the size).
    return F.pad(x, pads, mode="replicate")


class CentrifugeNet(nn.Module):
    """Predictor (``correction_steps == 0``) or predictor–corrector: O = Õ + Δ (appendix A, Fig. 9).

    Example:
        >>> net = build_model("tiny")
        >>> net(torch.rand(1, 3, 8, 32, 32)).shape
        torch.Size([1, 4, 3, 8, 32, 32])
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        n = config.num_layers
        # affine: a gain and 3 offsets per difference; motion: K logits, a gain and 3 offsets per pair
        head = {"symmetric": 3 * n // 2, "affine": 2 * n,
                "motion": (len(velocity_hypotheses()) + 4) * n // 2}.get(config.output, 3 * n)
        self.predictor = UNet(3, head, config.final_endpoint, config.width, config.input_skip, config.channel_multiple)
        if config.clip_statistics:
            self.statistics_head = nn.Sequential(nn.Linear(CLIP_STATISTICS, STATISTICS_HIDDEN), nn.ReLU(), nn.Linear(STATISTICS_HIDDEN, head))
            nn.init.zeros_(self.statistics_head[-1].weight)
            nn.init.zeros_(self.statistics_head[-1].bias)
        if config.light_gate:
            self.light_head = nn.Sequential(nn.Linear(CLIP_STATISTICS, STATISTICS_HIDDEN), nn.ReLU(), nn.Linear(STATISTICS_HIDDEN, 1))
            nn.init.zeros_(self.light_head[-1].weight)  # starts undecided (p = 0.5)
            self.light_logit: torch.Tensor | None = None  # of the last forward pass, for the training loss
        if config.output == "motion":
            # The choice among velocities starts as "the one along which the blend stays sharpest"
            # (β·energy); the network's logits are added to it.
            self.energy_scale = nn.Parameter(torch.tensor(MOTION_ENERGY_SCALE))
        # The correctors do not share weights with the predictor (section 3.2).
        self.correctors = nn.ModuleList(UNet(3 * n, 3 * n, config.final_endpoint, config.width, config.input_skip, config.channel_multiple) for _ in range(config.correction_steps))

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def stride(self) -> tuple[int, int, int]:
        return self.predictor.stride

    def _layers_from_head(self, head: torch.Tensor, video: torch.Tensor, averages: torch.Tensor | None = None,
                          energy: torch.Tensor | None = None) -> torch.Tensor:
        b, _, t, h, w = head.shape
        # In fp32 and the standard layout: under bf16 autocast with channels_last_3d the head's
        # channels are innermost, and the elementwise passes below (tanh, products, the loss after
        # them) ran several times slower on those strided bf16 views than on a contiguous copy.
        head = head.to(torch.float32, memory_format=torch.contiguous_format)
        if self.config.output == "direct":
            return head.view(b, self.num_layers, 3, t, h, w)
        if self.config.output == "residual":
            return video.unsqueeze(1) + head.view(b, self.num_layers, 3, t, h, w)
        if self.config.output == "motion":
            pairs = self.num_layers // 2
            weights, gain, offset = head.view(b, pairs, -1, t, h, w).split([averages.shape[1], 1, 3], dim=2)
            logits = weights + self.energy_scale * energy.unsqueeze(1)
            averaged = torch.einsum("bnkthw,bkcthw->bncthw", logits.softmax(dim=2), averages)
            first = (1 + torch.tanh(gain)) * averaged + torch.tanh(offset)
            return torch.cat([first, 2 * video.unsqueeze(1) - first], dim=1)
        pairs = self.num_layers // 2
        if self.config.output == "affine":
            gain, offset = head.view(b, pairs, 4, t, h, w).split([1, 3], dim=2)
            # Both terms are bounded where they mean something. The gain in [-1, 1]: +1 hands the
            # blend's detail to the first layer of the pair (2V and 0), −1 to the second; one gain for
            # all three colour channels, because a per-channel gain flipped channels independently and
            # tinted the layers purple and green. The offset in [-1, 1], the range a true difference
            # needs: unbounded, outputs left [0, 1] far enough on unseen photographs to score 7× the
            # identity loss.
            difference = torch.tanh(gain) * video.unsqueeze(1) + torch.tanh(offset)
        else:
            difference = head.view(b, pairs, 3, t, h, w)
        return torch.cat([video.unsqueeze(1) + difference, video.unsqueeze(1) - difference], dim=1)

    def _head(self, x: torch.Tensor, video: torch.Tensor, light: torch.Tensor | None = None) -> torch.Tensor:
        """The predictor's head channels for the padded blend ``x``, plus the bias that the blend's
        colour range (of ``video``, before padding) sets when ``clip_statistics`` is on, gated by
        ``light`` ``(B,)`` in [0, 1] or, when that is None, by the light head's probability."""
        head = self.predictor(x * 2 - 1)
        if not self.config.clip_statistics:
            return head
        statistics = clip_statistics(video.float())
        bias = self.statistics_head(statistics)
        if self.config.light_gate:
            self.light_logit = self.light_head(statistics).squeeze(1)
            gate = torch.sigmoid(self.light_logit) if light is None else light.to(bias.dtype)
            bias = bias * gate[:, None]
        return head + bias.to(head.dtype)[:, :, None, None, None]

    def forward(self, video: torch.Tensor, return_all: bool = False, light: torch.Tensor | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Separate a batch of videos.

        Args:
            video: ``(B, 3, T, H, W)`` in [0, 1].
            return_all: also return the predictor's and every corrector's output.
            light: with ``light_gate``, whether each blend holds a light ``(B,)`` (training gives
                the answer); None lets the model's light head decide.
        Returns:
            ``(B, n, 3, T, H, W)`` (unclamped), or the list of outputs after each stage.
        """
        assert video.dim() == 5 and video.shape[1] == 3, f"video must be (B, 3, T, H, W), got {tuple(video.shape)}"
        size = video.shape[2:]
        x = _replicate_pad(video, self.stride)
        if self.config.output == "motion":
            averages = motion_averages(x.float())
            # The averages are linear in the video: their mean over colour is the grey level's.
            energy = motion_energy(averages.mean(dim=2, keepdim=True))
            layers = self._layers_from_head(self._head(x, video, light), x, averages, energy)
        else:
            layers = self._layers_from_head(self._head(x, video, light), x)
        stages = [layers]
        b, n, c, t, h, w = layers.shape
        for corrector in self.correctors:
            delta = corrector(layers.reshape(b, n * c, t, h, w) * 2 - 1)
            layers = layers + delta.view(b, n, c, t, h, w)
            stages.append(layers)
        stages = [s[..., : size[0], : size[1], : size[2]] for s in stages]
        return stages if return_all else stages[-1]


def build_model(name: str | ModelConfig = "small", **overrides) -> CentrifugeNet:
    """Build a model from a named configuration (see ``MODEL_CONFIGS``), with fields overridden."""
    if isinstance(name, ModelConfig):
        config = name
    else:
        if name not in MODEL_CONFIGS:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_CONFIGS)}")
        config = MODEL_CONFIGS[name]
    if overrides:
        config = dataclasses.replace(config, **checked_fields(ModelConfig, overrides, "model option", "model."))
    return CentrifugeNet(config)
