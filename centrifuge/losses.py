"""Losses: the video reconstruction loss (Eq. 3), the permutation-invariant loss (Eq. 2), the
optional recomposition (Eq. 4) and diversity terms, and the test-time choice of two layers.

Layout: layers are ``(B, n, C, T, H, W)``; targets ``(B, k, C, T, H, W)`` with n ≥ k ≥ 2.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch


def reconstruction_loss(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with per-element means: ``mean|U−V| + mean|∂x(U−V)| + mean|∂y(U−V)|``.

    The derivatives are finite differences along width and height; every mean runs over the last
    four dimensions ``(C, T, H, W)``, so the leading dimensions are kept.

    Args:
        u, v: ``(..., C, T, H, W)``, broadcastable.
    Returns:
        ``(...)``.
    """
    d = u - v
    value = d.abs().mean(dim=(-4, -3, -2, -1))
    if d.shape[-1] > 1:
        value = value + (d[..., :, 1:] - d[..., :, :-1]).abs().mean(dim=(-4, -3, -2, -1))
    if d.shape[-2] > 1:
        value = value + (d[..., 1:, :] - d[..., :-1, :]).abs().mean(dim=(-4, -3, -2, -1))
    return value


def _check_layout(layers: torch.Tensor, name: str) -> None:
    assert layers.dim() == 6, f"{name} must be (B, n, C, T, H, W), got {tuple(layers.shape)}"


def pairwise_loss_matrix(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ℓ between every output and every target.

    On a GPU one broadcast pass over all B·n·k pairs (fewest kernel launches); on the CPU one pair
    at a time: the broadcast pass's temporaries hold B·n·k clips, and it ran 4-5× slower
    (memory-bound) than the loop, whose pairs fit in cache.

    Args:
        outputs: ``(B, n, C, T, H, W)``.
        targets: ``(B, k, C, T, H, W)``.
    Returns:
        ``(B, n, k)``: entry ``[b, i, j]`` is ℓ(targets[b, j], outputs[b, i]).
    """
    _check_layout(outputs, "outputs")
    _check_layout(targets, "targets")
    if outputs.device.type != "cpu":
        return reconstruction_loss(outputs.unsqueeze(2), targets.unsqueeze(1))
    b, n, k = outputs.shape[0], outputs.shape[1], targets.shape[1]
    pairs = [reconstruction_loss(outputs[e, i], targets[e, j]) for e in range(b) for i in range(n) for j in range(k)]
    return torch.stack(pairs).view(b, n, k)


@functools.lru_cache(maxsize=64)
def _assignments(n: int, k: int) -> torch.Tensor:
    """Every injective map of k targets to n outputs, ``(m, k)``: row r gives the output of each target."""
    return torch.tensor(list(itertools.permutations(range(n), k)), dtype=torch.long)


# Beyond this many assignments the exhaustive search costs more than the Hungarian algorithm.
_EXHAUSTIVE_LIMIT = 5040


def best_assignment(costs: torch.Tensor) -> torch.Tensor:
    """The injective assignment of targets to outputs with the lowest total cost.

    Args:
        costs: ``(B, n, k)``, n ≥ k.
    Returns:
        ``(B, k)`` long: the output index matched to each target.
    """
    b, n, k = costs.shape
    if n < k:
        raise ValueError(f"need at least as many outputs as targets, got n={n} < k={k}")
    if _num_assignments(n, k) <= _EXHAUSTIVE_LIMIT:
        perms = _assignments(n, k).to(costs.device)  # (m, k)
        totals = costs[:, perms, torch.arange(k, device=costs.device)].sum(-1)  # (B, m)
        return perms[totals.argmin(dim=1)]
    from scipy.optimize import linear_sum_assignment

    rows = []
    for matrix in costs.detach().float().cpu().numpy():
        out_idx, tgt_idx = linear_sum_assignment(matrix)
        order = np.empty(k, dtype=np.int64)
        order[tgt_idx] = out_idx
        rows.append(order)
    return torch.from_numpy(np.stack(rows)).to(costs.device)


def _num_assignments(n: int, k: int) -> int:
    count = 1
    for i in range(k):
        count *= n - i
    return count


def _matched_losses(outputs: torch.Tensor, targets: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """ℓ(targets[b, j], outputs[b, assignment[b, j]]) with gradient: ``(B, k)``; one pair at a time
    on the CPU (see ``pairwise_loss_matrix``)."""
    if outputs.device.type != "cpu":
        picked = _matched_outputs(outputs, assignment)
        return reconstruction_loss(picked, targets)
    # unbind, not indexing: each indexed slice's backward allocates a zero tensor the size of all
    # outputs, and those fills cost as much as the network's BatchNorm backward.
    clips = [example.unbind(0) for example in outputs.unbind(0)]
    return torch.stack([torch.stack([reconstruction_loss(clips[e][i], targets[e, j]) for j, i in enumerate(row)])
                        for e, row in enumerate(assignment.tolist())])


def layer_speed(layers: torch.Tensor) -> torch.Tensor:
    """Each layer's speed in pixels per frame, estimated as its normal flow over the clip: the mean
    absolute change of its grey level between frames over its mean absolute spatial gradient
    (exact for a texture sliding along one axis; for any motion it grows with the speed).

    Args:
        layers: ``(..., C, T, H, W)``.
    Returns:
        ``(...)``; 0 for a still or flat layer.
    """
    grey = layers.float().mean(dim=-4)
    change = (grey[..., 1:, :, :] - grey[..., :-1, :, :]).abs().mean(dim=(-3, -2, -1))
    gradient = ((grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dim=(-3, -2, -1))
                + (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean(dim=(-3, -2, -1)))
    return change / (gradient + 1e-3)


def speed_contrast(targets: torch.Tensor) -> torch.Tensor:
    """How clearly the blend shows the speed order of its layers: the smallest, over neighbours in
    that order, of (s₁ − s₂) / (s₁ + s₂), in [0, 1]; 1 for a still layer under a moving one, 0 for
    two layers at one speed (whose order is arbitrary). ``targets`` ``(B, k, C, T, H, W)`` → ``(B,)``."""
    speed = layer_speed(targets).sort(dim=1, descending=True).values
    faster, slower = speed[:, :-1], speed[:, 1:]
    return ((faster - slower) / (faster + slower + 1e-6)).min(dim=1).values


def speed_assignment(targets: torch.Tensor) -> torch.Tensor:
    """The fixed assignment of the ordered loss: the fastest target to output 0, the next to
    output 1, and so on (ties by target order). ``targets`` ``(B, k, C, T, H, W)`` → ``(B, k)``."""
    order = layer_speed(targets).argsort(dim=1, descending=True, stable=True)  # [b, r]: the target of rank r
    ranks = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


@dataclass
class PITResult:
    loss: torch.Tensor  # scalar: batch mean of the matched losses (plus enabled terms)
    per_example: torch.Tensor  # (B,) the Eq. 2 value of each example
    assignment: torch.Tensor  # (B, k) output index matched to each target
    costs: torch.Tensor  # (B, n, k), without gradient: it only chooses the assignment


def pit_loss(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    blend: torch.Tensor | None = None,
    alpha: torch.Tensor | float = 0.5,
    recomposition_weight: float = 0.0,
    diversity_weight: float = 0.0,
    ordered_weight: float = 0.0,
    ordered_contrast: float = 0.0,
    exclusion_weight: float = 0.0,
    written_weight: float = 0.0,
    colour_invariant_weight: float = 0.0,
    written_mask: torch.Tensor | None = None,
) -> PITResult:
    """Eq. 2: the minimum over injective assignments of the summed per-target losses.

    Gradient reaches only the outputs chosen by the assignment (besides the optional terms).

    Args:
        outputs: ``(B, n, C, T, H, W)``.
        targets: ``(B, k, C, T, H, W)``, k ≤ n.
        blend: ``(B, C, T, H, W)``, needed by the recomposition term.
        alpha: ``(B,)`` or a number, the blend's α (Eq. 4).
        recomposition_weight: weight of ℓ(V, (1−α)Oⁱ + αOʲ) for the matched i, j (Eq. 4; k = 2).
        diversity_weight: weight of −mean_{i≠j} ℓ(Oⁱ, Oʲ), the paper's explicit diversity term.
        ordered_weight: w in (1 − w)·Eq. 2 + w·the same sum under a fixed assignment, the faster
            layer to output 0 (``speed_assignment``; not in the paper). Under Eq. 2 alone the
            matching is arbitrary until a network separates, so what one clip rewards another
            undoes; a rule the blend shows gives every clip the same target from the first step.
            ``per_example`` stays Eq. 2's.
        ordered_contrast: clips whose ``speed_contrast`` is below it keep Eq. 2 alone: where two
            layers move at about one speed, "the faster first" is a coin toss the network cannot
            learn, and it would teach the network noise.
        exclusion_weight: weight of ``exclusion_loss`` between the matched outputs (not in the
            paper): an edge in both outputs is penalised, which a darker and a lighter copy of the
            blend, with every edge in both, cannot avoid.
        written_weight: weight of ``written_pair_losses``, Eq. 2 on the two outputs ``separate``
            writes (not in the paper; k = 2): it ties the pair a user gets to the answer.
        written_mask: ``(B,)`` bool, the examples the written-pair term counts (default: all);
            the term is their mean, 0 when none is counted.
        colour_invariant_weight: weight of ``colour_invariant_losses`` for the matched outputs (not
            in the paper): structure is rewarded, a global colour change of the blend is not.

    Example:
        >>> targets = torch.rand(2, 2, 3, 4, 8, 8)
        >>> outputs = torch.cat([targets.flip(1), torch.rand(2, 2, 3, 4, 8, 8)], dim=1)
        >>> result = pit_loss(outputs, targets)
        >>> float(result.loss), result.assignment.tolist()
        (0.0, [[1, 0], [1, 0]])
    """
    # The n × k cost matrix only chooses the assignment, so it is built without autograd; the loss
    # is then recomputed on the k matched pairs alone. Same value and gradient as gathering from a
    # differentiable matrix, but autograd keeps k pairs' intermediates instead of n·k: on the CPU the
    # differentiable matrix cost more than the network's own forward and backward (4 × 2 pairs).
    # A network run in channels_last_3d hands over strided outputs; the elementwise passes below
    # run 2-3x faster on a contiguous copy.
    outputs, targets = outputs.contiguous(), targets.contiguous()
    with torch.no_grad():
        costs = pairwise_loss_matrix(outputs, targets)
        assignment = best_assignment(costs)
    if not 0 <= ordered_weight <= 1:
        raise ValueError(f"ordered_weight must be between 0 and 1, got {ordered_weight}")
    if not 0 <= ordered_contrast < 1:
        raise ValueError(f"ordered_contrast must be at least 0 and below 1, got {ordered_contrast}")
    k = targets.shape[1]
    # per clip: the share of its loss under the speed order (none where the speeds are about equal)
    weights = (ordered_weight * (speed_contrast(targets) >= ordered_contrast).float() if ordered_weight
               else torch.zeros(len(targets), device=outputs.device))
    if bool((weights >= 1).all()):  # Eq. 2 only reported: its value from the cost matrix, no gradient
        per_example = costs.gather(1, assignment.unsqueeze(1)).squeeze(1).sum(dim=1)
        loss = _matched_losses(outputs, targets, speed_assignment(targets)).sum(dim=1).mean()
    else:
        per_example = _matched_losses(outputs, targets, assignment).sum(dim=1)  # (B, k) summed
        loss = per_example.mean()
        if ordered_weight:
            ordered = _matched_losses(outputs, targets, speed_assignment(targets)).sum(dim=1)
            loss = ((1 - weights) * per_example + weights * ordered).mean()
    if recomposition_weight:
        if blend is None or k != 2:
            raise ValueError("the recomposition term needs the blend and exactly two targets")
        a = torch.as_tensor(alpha, dtype=outputs.dtype, device=outputs.device)
        a = a.view(-1, 1, 1, 1, 1) if a.dim() else a
        picked = _matched_outputs(outputs, assignment)  # (B, 2, C, T, H, W)
        recomposed = (1 - a) * picked[:, 0] + a * picked[:, 1]
        loss = loss + recomposition_weight * reconstruction_loss(blend, recomposed).mean()
    if diversity_weight:
        loss = loss - diversity_weight * pairwise_output_distances(outputs, exclude_self=True).mean()
    if exclusion_weight:
        picked = _matched_outputs(outputs, assignment)
        pairs = [exclusion_loss(picked[:, i], picked[:, j]) for i in range(k) for j in range(i + 1, k)]
        loss = loss + exclusion_weight * torch.stack(pairs).mean()
    if written_weight:
        written = written_pair_losses(outputs, targets)
        if written_mask is not None:
            written = written[written_mask.to(written.device)]
        if len(written):
            loss = loss + written_weight * written.mean()
    if colour_invariant_weight:
        loss = loss + colour_invariant_weight * colour_invariant_losses(outputs, targets, assignment).sum(dim=1).mean()
    return PITResult(loss=loss, per_example=per_example, assignment=assignment, costs=costs)


def _matched_outputs(outputs: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """The output matched to each target, with gradient: ``(B, k, C, T, H, W)``."""
    return outputs[torch.arange(len(outputs), device=outputs.device).unsqueeze(1), assignment]


def exclusion_loss(a: torch.Tensor, b: torch.Tensor, scales: int = 3, floor: float = 1e-4) -> torch.Tensor:
    """How much two layers have their edges in the same places, in [0, 1]: after the gradient
    exclusion loss of Zhang, Ng and Chen (CVPR 2018, single-image reflection removal), normalised as
    a correlation of gradient magnitudes.

    At each of ``scales`` resolutions (halved by 2 × 2 averaging), for x and y derivatives:
    ``mean(|∇a|·|∇b|) / sqrt((mean|∇a|² + floor)(mean|∇b|² + floor))``, then averaged. A layer and
    itself (or a darker copy of itself) score about 1, whatever their contrast, so fainter layers
    do not lower it; layers whose edges never meet score 0. Zhang et al. rescale one layer by a
    ratio of gradient norms inside a ``tanh``, which treats the two layers differently: with that
    ratio taken whole (not its square root), the flat ``cup`` scene as the first layer made its true
    layers score above the blend itself. ``floor`` (a gradient RMS of 0.01) keeps a nearly flat
    layer's noise from being magnified to full weight.

    Args:
        a, b: ``(B, C, T, H, W)``.
    Returns:
        ``(B,)``.
    """
    dims = (-4, -3, -2, -1)
    terms = []
    for scale in range(scales):
        if scale:
            if min(a.shape[-2:]) < 4:
                break
            a = torch.nn.functional.avg_pool3d(a, (1, 2, 2))
            b = torch.nn.functional.avg_pool3d(b, (1, 2, 2))
        for da, db in (((a[..., :, 1:] - a[..., :, :-1]).abs(), (b[..., :, 1:] - b[..., :, :-1]).abs()),
                       ((a[..., 1:, :] - a[..., :-1, :]).abs(), (b[..., 1:, :] - b[..., :-1, :]).abs())):
            scale_ab = ((da.square().mean(dim=dims) + floor) * (db.square().mean(dim=dims) + floor)).sqrt()
            terms.append((da * db).mean(dim=dims) / scale_ab)
    return torch.stack(terms).mean(dim=0)


def pairwise_output_distances(layers: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """ℓ(Oⁱ, Oʲ) for every pair of outputs: ``(B, n, n)``; with ``exclude_self`` the ``(B, n(n−1))``
    off-diagonal entries."""
    _check_layout(layers, "layers")
    distances = reconstruction_loss(layers.unsqueeze(2), layers.unsqueeze(1))
    if not exclude_self:
        return distances
    n = layers.shape[1]
    off = ~torch.eye(n, dtype=torch.bool, device=layers.device)
    return distances[:, off]


def diversity(layers: torch.Tensor) -> torch.Tensor:
    """The paper's diversity metric min_{i≠j} ℓ(Oⁱ, Oʲ) (section 4.2), per example: ``(B,)``."""
    return pairwise_output_distances(layers, exclude_self=True).min(dim=1).values


def identity_outputs(blend: torch.Tensor, k: int = 2) -> torch.Tensor:
    """The identity baseline's outputs: the blend repeated k times, ``(B, k, C, T, H, W)``."""
    return blend.unsqueeze(1).expand(-1, k, *blend.shape[1:])


def most_distant_pairs(layers: torch.Tensor) -> torch.Tensor:
    """Per example, the two outputs farthest apart in pixel space (mean absolute difference): the
    paper's test-time choice of two layers out of n, and what ``separate`` writes. Ties go to the
    first pair in (0, 1), (0, 2), …, (1, 2), … order.

    Args:
        layers: ``(B, n, ...)``.
    Returns:
        ``(B, 2)`` long, ``i < j`` in each row; chosen without gradient.
    """
    n = layers.shape[1]
    if n < 2:
        raise ValueError("need at least two layers")
    pairs = list(itertools.combinations(range(n), 2))
    with torch.no_grad():
        flat = layers.reshape(*layers.shape[:2], -1)
        distances = torch.stack([(flat[:, i].float() - flat[:, j].float()).abs().mean(dim=1) for i, j in pairs], dim=1)
    return torch.tensor(pairs, dtype=torch.long, device=layers.device)[distances.argmax(dim=1)]


def most_distant_pair(layers: torch.Tensor) -> tuple[int, int]:
    """``most_distant_pairs`` of one example: ``layers`` ``(n, ...)`` → ``(i, j)`` with i < j."""
    i, j = most_distant_pairs(layers.unsqueeze(0))[0].tolist()
    return i, j


def colour_fitted(outputs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Each output after the least-squares map ``gain · output + offset`` onto its target, one gain
    and offset per clip and colour channel, with gradient through both: ``(..., C, T, H, W)``.
    What a global brightness, contrast or colour change can do is taken out before comparing.
    ``eps`` (in squared [0, 1] units) keeps the gain of a flat output near 0."""
    dims = (-3, -2, -1)
    centred = outputs - outputs.mean(dims, keepdim=True)
    target_mean = targets.mean(dims, keepdim=True)
    gain = (centred * (targets - target_mean)).mean(dims, keepdim=True) / ((centred * centred).mean(dims, keepdim=True) + eps)
    return gain * centred + target_mean


def colour_invariant_losses(outputs: torch.Tensor, targets: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """Eq. 3 between each target and its matched output after :func:`colour_fitted`: ``(B, k)``.

    Under Eq. 2 a darker and a lighter copy of the blend earn a lower loss than the blend itself,
    the assignment giving each copy the target it suits, and that is where the networks here
    stop. Any global colour map of the blend scores the same as the blend under this term: only
    taking one scene's content out of the other's lowers it (the role SI-SDR plays in audio
    separation, where a source's scale is likewise undetermined)."""
    picked = _matched_outputs(outputs, assignment)
    return reconstruction_loss(colour_fitted(picked, targets), targets)


def written_pair(outputs: torch.Tensor) -> torch.Tensor:
    """``(B, n, C, T, H, W)`` → ``(B, 2, …)``: per example the two outputs ``separate`` would write
    (``most_distant_pairs``), with gradient."""
    return _matched_outputs(outputs, most_distant_pairs(outputs))


def written_pair_losses(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 2 restricted to the two outputs ``separate`` would write (``most_distant_pairs``), with
    gradient through them: ``(B,)``. Under Eq. 2 alone, with n > 2 outputs, the answer picks the
    best two; the outputs it does not pick are free, and the most distant pair can end a darker and
    a lighter copy of the blend that the answer rarely picks but a user always gets."""
    _check_layout(outputs, "outputs")
    if targets.shape[1] != 2:
        raise ValueError(f"the written pair is two layers; got {targets.shape[1]} targets")
    picked = written_pair(outputs)
    with torch.no_grad():
        assignment = best_assignment(pairwise_loss_matrix(picked, targets))
    return _matched_losses(picked, targets, assignment).sum(dim=1)


# A layer whose pixels differ from their 3×3 neighbourhood's mean by less than this on average has
# no detail of its own: the training lights (flat, ramps, soft spots) stay under 3e-4 at 64 px,
# held-back real clips over 6e-3 and the smoothest held-back photographs (sky) at 6e-4 (session 37).
LIGHT_DETAIL = 1e-3


def fine_detail(layers: torch.Tensor) -> torch.Tensor:
    """``(..., C, T, H, W)`` → ``(...)``: the mean absolute difference between each pixel and the
    mean of its 3×3 neighbourhood (edges replicated)."""
    shape = layers.shape
    frames = layers.reshape(-1, 1, shape[-2], shape[-1])
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return (frames - blurred).abs().reshape(*shape[:-4], -1).mean(-1)


def light_labels(layers: torch.Tensor, threshold: float = LIGHT_DETAIL) -> torch.Tensor:
    """``(B, k, C, T, H, W)`` → ``(B,)``: 1 where one of a blend's true layers is a light, a layer
    with no detail of its own (:func:`fine_detail` under ``threshold``), else 0."""
    _check_layout(layers, "layers")
    return (fine_detail(layers.float()) < threshold).any(dim=1).float()


def keep_loss(outputs: torch.Tensor, kept: torch.Tensor, holds_light: torch.Tensor) -> torch.Tensor:
    """Eq. 3 between each output and the same output of the model a fine-tune keeps to, summed
    over outputs and averaged over the blends that hold no light (0 when every blend holds one).

    Args:
        outputs, kept: ``(B, n, C, T, H, W)``; ``kept`` without gradient.
        holds_light: ``(B,)``, 1 where a blend holds a light (``light_labels``).
    """
    per_example = reconstruction_loss(outputs, kept).sum(dim=1)
    weights = 1.0 - holds_light.to(per_example.dtype)
    return (weights * per_example).sum() / weights.sum().clamp_min(1.0)
