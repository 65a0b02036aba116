import itertools

import pytest
import torch

from centrifuge.losses import (
    best_assignment,
    colour_fitted,
    colour_invariant_losses,
    diversity,
    exclusion_loss,
    identity_outputs,
    layer_speed,
    most_distant_pair,
    most_distant_pairs,
    pairwise_loss_matrix,
    pit_loss,
    reconstruction_loss,
    speed_assignment,
    speed_contrast,
    written_pair_losses,
)


def test_reconstruction_loss_matches_eq3_written_out():
    u, v = torch.rand(3, 4, 6, 7), torch.rand(3, 4, 6, 7)
    d = (u - v).numpy()
    expected = abs(d).mean() + abs(d[..., :, 1:] - d[..., :, :-1]).mean() + abs(d[..., 1:, :] - d[..., :-1, :]).mean()
    assert float(reconstruction_loss(u, v)) == pytest.approx(float(expected), rel=1e-5)
    assert float(reconstruction_loss(u, u)) == 0.0


def brute_force_pit(outputs, targets):
    """An independent reference: every injective assignment, summed loss, minimum."""
    b, n, k = outputs.shape[0], outputs.shape[1], targets.shape[1]
    results = []
    for i in range(b):
        best = min(
            sum(float(reconstruction_loss(outputs[i, p[j]], targets[i, j])) for j in range(k))
            for p in itertools.permutations(range(n), k)
        )
        results.append(best)
    return torch.tensor(results)


@pytest.mark.parametrize("n,k", [(2, 2), (4, 2), (3, 3), (6, 2), (8, 4)])
def test_pit_equals_brute_force(n, k):
    torch.manual_seed(n * 10 + k)
    outputs, targets = torch.rand(3, n, 3, 2, 6, 6), torch.rand(3, k, 3, 2, 6, 6)
    result = pit_loss(outputs, targets)
    assert torch.allclose(result.per_example, brute_force_pit(outputs, targets), atol=1e-5)
    assert float(result.loss) == pytest.approx(float(result.per_example.mean()), rel=1e-6)


def test_hungarian_path_equals_exhaustive_search():
    torch.manual_seed(1)
    costs = torch.rand(4, 12, 4)  # 12·11·10·9 = 11880 assignments: the Hungarian branch
    chosen = best_assignment(costs)
    for b in range(4):
        best = min(sum(float(costs[b, p[j], j]) for j in range(4)) for p in itertools.permutations(range(12), 4))
        got = sum(float(costs[b, chosen[b, j], j]) for j in range(4))
        assert got == pytest.approx(best, abs=1e-6)
        assert len(set(chosen[b].tolist())) == 4


def test_pit_is_invariant_to_permuting_outputs():
    torch.manual_seed(2)
    outputs, targets = torch.rand(2, 4, 3, 2, 8, 8), torch.rand(2, 2, 3, 2, 8, 8)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(pit_loss(outputs, targets).per_example, pit_loss(outputs[:, perm], targets).per_example)


def test_permuted_targets_give_zero_loss_and_the_undoing_assignment():
    torch.manual_seed(3)
    targets = torch.rand(2, 3, 3, 2, 8, 8)
    perm = torch.tensor([2, 0, 1])
    outputs = targets[:, perm]  # output i is target perm[i]
    result = pit_loss(outputs, targets)
    assert float(result.loss) == 0.0
    for j in range(3):  # target j sits at the output i with perm[i] == j
        assert int(perm[result.assignment[0, j]]) == j


def test_gradient_reaches_only_the_chosen_outputs():
    torch.manual_seed(4)
    targets = torch.rand(1, 2, 3, 2, 8, 8)
    outputs = torch.rand(1, 4, 3, 2, 8, 8)
    outputs[0, 3] = targets[0, 0] + 0.01  # outputs 3 and 1 are the obvious matches
    outputs[0, 1] = targets[0, 1] - 0.01
    outputs.requires_grad_(True)
    result = pit_loss(outputs, targets)
    result.loss.backward()
    assert result.assignment.tolist() == [[3, 1]]
    norms = outputs.grad.abs().sum(dim=(2, 3, 4, 5))[0]
    assert norms[1] > 0 and norms[3] > 0
    assert norms[0] == 0 and norms[2] == 0


def test_recomposition_term_adds_eq4():
    torch.manual_seed(5)
    targets = torch.rand(2, 2, 3, 2, 8, 8)
    outputs = torch.rand(2, 4, 3, 2, 8, 8)
    blend = 0.5 * targets[:, 0] + 0.5 * targets[:, 1]
    plain = pit_loss(outputs, targets)
    with_term = pit_loss(outputs, targets, blend=blend, alpha=0.5, recomposition_weight=1.0)
    a = plain.assignment
    recomposed = torch.stack([0.5 * outputs[b, a[b, 0]] + 0.5 * outputs[b, a[b, 1]] for b in range(2)])
    expected = plain.loss + reconstruction_loss(blend, recomposed).mean()
    assert float(with_term.loss) == pytest.approx(float(expected), rel=1e-5)


def test_identity_baseline_of_a_blend_is_the_pair_of_half_differences():
    targets = torch.rand(1, 2, 3, 2, 8, 8)
    blend = 0.5 * targets[:, 0] + 0.5 * targets[:, 1]
    loss = pit_loss(identity_outputs(blend), targets).loss
    half = 0.5 * (targets[:, 0] - targets[:, 1])
    assert float(loss) == pytest.approx(2 * float(reconstruction_loss(half, torch.zeros_like(half))), rel=1e-5)


def test_diversity_and_most_distant_pair():
    base = torch.zeros(1, 4, 3, 2, 4, 4)
    base[0, 1] += 0.1
    base[0, 2] += 0.9
    base[0, 3] += 0.5
    assert float(diversity(base)[0]) == pytest.approx(0.1, rel=1e-5)  # closest pair: outputs 0 and 1
    assert most_distant_pair(base[0]) == (0, 2)
    assert pairwise_loss_matrix(base, base[:, :2]).shape == (1, 4, 2)


def test_more_targets_than_outputs_is_refused():
    with pytest.raises(ValueError):
        pit_loss(torch.rand(1, 2, 3, 1, 4, 4), torch.rand(1, 3, 3, 1, 4, 4))


def test_cpu_pair_loop_equals_the_broadcast_pass_in_value_and_gradient():
    """The CPU computes one pair at a time (cache-sized); a GPU runs one broadcast pass. Both must
    give the same cost matrix, loss and gradient, on strided (channels_last_3d) outputs too."""
    torch.manual_seed(5)
    head = torch.rand(3, 4 * 3, 4, 10, 12).contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
    targets = torch.rand(3, 2, 3, 4, 10, 12)
    result = pit_loss(head.view(3, 4, 3, 4, 10, 12), targets)
    result.loss.backward()
    loop_grad = head.grad.clone()

    head.grad = None
    outputs = head.view(3, 4, 3, 4, 10, 12)
    costs = reconstruction_loss(outputs.unsqueeze(2), targets.unsqueeze(1))  # (B, n, k) in one pass
    assert torch.allclose(result.costs, costs.detach(), atol=1e-6)
    matched = costs.gather(1, result.assignment.unsqueeze(1)).squeeze(1)
    matched.sum(1).mean().backward()
    assert float(result.loss.detach()) == pytest.approx(float(matched.detach().sum(1).mean()), rel=1e-6)
    assert torch.allclose(loop_grad, head.grad, atol=1e-8)
    assert loop_grad.abs().sum() > 0


def sliding_texture(seed: int, velocity: int, frames: int = 6, size: int = 24) -> torch.Tensor:
    """A smooth random texture sliding ``velocity`` whole pixels per frame to the right: ``(3, T, H, W)``."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.nn.functional.avg_pool2d(torch.rand(1, 3, size, size + frames * 4 + 8, generator=g), 3, 1, 1)[0]
    return torch.stack([wide[:, :, 4 + t * velocity: 4 + t * velocity + size] for t in range(frames)], dim=1)


def test_layer_speed_measures_pixels_per_frame_and_ranks_layers_by_it():
    layers = torch.stack([sliding_texture(s, v) for s, v in [(0, 0), (1, 1), (2, 3)]]).unsqueeze(0)  # (1, 3, C, T, H, W)
    speed = layer_speed(layers)[0]
    assert float(speed[0]) == 0.0
    assert 0.4 < float(speed[1]) < float(speed[2])  # normal flow: |∂t| / |∇| grows with the speed
    # a flat layer has no motion to measure and counts as still
    assert float(layer_speed(torch.full((3, 6, 8, 8), 0.3))) == 0.0
    # the fastest target goes to output 0, whatever order the targets come in
    assert speed_assignment(layers).tolist() == [[2, 1, 0]]
    assert speed_assignment(layers[:, [2, 0, 1]]).tolist() == [[0, 2, 1]]


def test_ordered_weight_trains_the_fixed_assignment_even_where_eq2_matches_the_other_way():
    fast, still = sliding_texture(0, 2), sliding_texture(1, 0)
    targets = torch.stack([still, fast]).unsqueeze(0)  # the fast layer is target 1
    outputs = torch.stack([still, fast, still, fast]).unsqueeze(0).requires_grad_()  # Eq. 2: zero, outputs 0 and 1
    plain = pit_loss(outputs, targets)
    assert float(plain.loss.detach()) == 0.0
    ordered = pit_loss(outputs, targets, ordered_weight=1.0)
    expected = reconstruction_loss(outputs[0, 0], fast) + reconstruction_loss(outputs[0, 1], still)
    value = float(ordered.loss.detach())
    assert value == pytest.approx(float(expected.detach()), rel=1e-5) and value > 0.1
    assert float(ordered.per_example[0]) == 0.0  # what is reported stays Eq. 2
    ordered.loss.backward()
    assert outputs.grad[0, :2].abs().sum() > 0 and outputs.grad[0, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="ordered_weight"):
        pit_loss(outputs, targets, ordered_weight=1.5)
    half = pit_loss(outputs, targets, ordered_weight=0.5)
    assert float(half.loss.detach()) == pytest.approx(0.5 * float(expected.detach()), rel=1e-5)


def test_ordered_contrast_orders_only_the_clips_whose_speeds_clearly_differ():
    still, fast, fast_too = sliding_texture(1, 0), sliding_texture(0, 2), sliding_texture(2, 2)
    clear = torch.stack([still, fast])  # one layer still: the order is plain to see
    tied = torch.stack([fast_too, fast])  # one speed: "the faster first" is a coin toss
    contrast = speed_contrast(torch.stack([clear, tied]))
    assert float(contrast[0]) > 0.99 and float(contrast[1]) < 0.05
    targets = torch.stack([clear, tied])
    # both clips matched the cheap way by Eq. 2 (zero), the opposite way by the speed order
    speed_order = speed_assignment(targets)[1].tolist()  # the tied clip's: whichever measured a hair faster
    tied_outputs = tied.flip(0) if speed_order == [0, 1] else tied
    outputs = torch.stack([clear, tied_outputs]).repeat(1, 2, 1, 1, 1, 1).requires_grad_()
    assert float(pit_loss(outputs, targets).loss.detach()) == 0.0
    everywhere = pit_loss(outputs, targets, ordered_weight=1.0)
    gated = pit_loss(outputs, targets, ordered_weight=1.0, ordered_contrast=0.5)
    first_only = reconstruction_loss(outputs[0, 0], fast) + reconstruction_loss(outputs[0, 1], still)
    # the tied clip keeps Eq. 2 (zero), the clear one pays for its wrong order: half of the batch mean
    assert float(gated.loss.detach()) == pytest.approx(0.5 * float(first_only.detach()), rel=1e-5)
    assert float(everywhere.loss.detach()) > float(gated.loss.detach()) + 0.01
    gated.loss.backward()
    assert outputs.grad[0].abs().sum() > 0 and outputs.grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="ordered_contrast"):
        pit_loss(outputs, targets, ordered_weight=1.0, ordered_contrast=1.0)


def _stripes(axis: int, period: int = 16, shape=(1, 3, 2, 64, 64)) -> torch.Tensor:
    """Bars across one spatial axis (-1: vertical bars, -2: horizontal), values 0.25 / 0.75."""
    index = torch.arange(shape[axis]) // (period // 2) % 2
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return (0.25 + 0.5 * index.float()).view(view).expand(shape).clone()


def test_exclusion_is_zero_for_disjoint_edges_and_high_for_shared_ones():
    left, top = _stripes(-1), _stripes(-2)
    flat = torch.full_like(left, 0.5)
    assert float(exclusion_loss(left, flat)) < 1e-5
    # vertical bars have only x edges, horizontal bars only y edges: nowhere an edge in both
    assert float(exclusion_loss(left, top)) < 1e-5
    blend = (left + top) / 2
    shared = float(exclusion_loss(0.7 * blend, 1.3 * blend))  # a darker and a lighter copy
    assert shared > 0.9
    assert float(exclusion_loss(left, blend)) == pytest.approx(float(exclusion_loss(blend, left)))
    # a fainter copy scores nearly the same: the term is a correlation, not a product
    assert float(exclusion_loss(0.3 * blend, 1.3 * blend)) > 0.9


def test_exclusion_weight_adds_the_term_between_matched_outputs_and_its_gradient_separates_edges():
    left, top = _stripes(-1), _stripes(-2)
    targets = torch.stack([left, top], dim=1)  # (1, 2, C, T, H, W)
    blend = targets.mean(dim=1)
    outputs = torch.stack([0.8 * blend, 1.2 * blend], dim=1).requires_grad_(True)
    plain = pit_loss(outputs, targets).loss
    weighted = pit_loss(outputs, targets, exclusion_weight=2.0)
    picked = outputs.detach()[0, weighted.assignment[0]]
    expected = plain + 2.0 * exclusion_loss(picked[0:1], picked[1:2]).mean()
    assert float(weighted.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    # a few gradient steps on the term alone lower it
    start = float(exclusion_loss(outputs[:, 0], outputs[:, 1]))
    optimiser = torch.optim.Adam([outputs], lr=0.02)
    for _ in range(20):
        optimiser.zero_grad()
        exclusion_loss(outputs[:, 0], outputs[:, 1]).sum().backward()
        optimiser.step()
    assert float(exclusion_loss(outputs[:, 0], outputs[:, 1])) < 0.8 * start


def test_most_distant_pairs_agree_with_a_search_of_every_pair():
    torch.manual_seed(3)
    layers = torch.rand(6, 4, 3, 2, 5, 5) * torch.rand(6, 4, 1, 1, 1, 1) * 2
    pairs = most_distant_pairs(layers)
    for b in range(len(layers)):
        distance = {(i, j): float((layers[b, i] - layers[b, j]).abs().mean()) for i, j in itertools.combinations(range(4), 2)}
        assert tuple(pairs[b].tolist()) == max(distance, key=distance.get)
        assert most_distant_pair(layers[b]) == tuple(pairs[b].tolist())


def test_written_pair_losses_score_the_most_distant_pair_even_where_eq2_picks_another():
    torch.manual_seed(0)
    targets = torch.rand(1, 2, 3, 2, 6, 6)
    blend = targets.mean(dim=1)
    # outputs 2 and 3 are the true layers; 0 and 1 a darker and a lighter copy of the blend,
    # farther apart than the true layers are
    outputs = torch.stack([0.1 * blend, blend + 0.8, targets[:, 1], targets[:, 0]], dim=1)
    assert most_distant_pair(outputs[0]) == (0, 1)
    assert float(pit_loss(outputs, targets).loss) == pytest.approx(0.0, abs=1e-6)  # the answer picks 2 and 3
    written = written_pair_losses(outputs, targets)
    assert float(written[0]) == pytest.approx(float(pit_loss(outputs[:, :2], targets).per_example[0]), rel=1e-6)
    assert float(written[0]) > 0.1
    with_term = pit_loss(outputs, targets, written_weight=0.5)
    assert float(with_term.loss) == pytest.approx(0.5 * float(written[0]), rel=1e-5)
    assert float(with_term.per_example[0]) == pytest.approx(0.0, abs=1e-6)  # Eq. 2 is still reported alone


def test_the_written_mask_counts_the_written_pair_term_on_the_chosen_blends_only():
    torch.manual_seed(0)
    targets = torch.rand(2, 2, 3, 2, 6, 6)
    blend = targets.mean(dim=1)
    # blend 0: the most distant pair is a darker and a lighter copy; blend 1: it is the true layers
    outputs = torch.stack([torch.stack([0.1 * blend[0], blend[0] + 0.8, targets[0, 1], targets[0, 0]]),
                           torch.stack([targets[1, 0] - 0.6, targets[1, 1] + 0.6, targets[1, 1], targets[1, 0]])])
    written = written_pair_losses(outputs, targets)
    assert float(written[0]) > 0.1 and float(written[1]) > 0.1 and float(written[0]) != pytest.approx(float(written[1]))
    plain = float(pit_loss(outputs, targets).loss)

    def term(mask) -> float:
        return float(pit_loss(outputs, targets, written_weight=0.5, written_mask=mask).loss) - plain

    assert term(None) == pytest.approx(0.5 * float(written.mean()), rel=1e-5)
    assert term(torch.tensor([True, False])) == pytest.approx(0.5 * float(written[0]), rel=1e-5)  # the mean of the counted
    assert term(torch.tensor([False, True])) == pytest.approx(0.5 * float(written[1]), rel=1e-5)
    assert term(torch.tensor([False, False])) == pytest.approx(0.0, abs=1e-7)


def test_written_weight_pulls_the_written_pair_onto_the_layers_that_eq2_alone_leaves_free():
    torch.manual_seed(1)
    targets = torch.rand(2, 2, 3, 2, 8, 8)
    blend = targets.mean(dim=1)

    def trained(written_weight: float) -> torch.Tensor:
        # two outputs start near the true layers, two as an extreme darker and lighter copy
        start = torch.stack([targets[:, 0] + 0.05, targets[:, 1] - 0.05, 0.1 * blend, blend + 0.9], dim=1)
        outputs = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([outputs], lr=0.02)
        for _ in range(60):
            optimiser.zero_grad()
            pit_loss(outputs, targets, written_weight=written_weight).loss.backward()
            optimiser.step()
        return outputs.detach()

    plain, tied = trained(0.0), trained(1.0)
    # Eq. 2 alone never touches the copies, which stay the pair a user gets
    assert float(written_pair_losses(plain, targets).mean()) > 0.5
    # the term moves the written pair onto the layers (or makes the layers the most distant pair)
    assert float(written_pair_losses(tied, targets).mean()) < 0.5 * float(written_pair_losses(plain, targets).mean())
    assert float(pit_loss(tied, targets).loss) < 0.1


def test_colour_fitted_undoes_a_global_colour_map_per_clip_and_channel():
    targets = torch.rand(2, 2, 3, 4, 8, 8)
    gains, offsets = torch.tensor([0.5, 1.5, -0.7]).view(3, 1, 1, 1), torch.tensor([0.2, -0.1, 0.4]).view(3, 1, 1, 1)
    mapped = targets * gains + offsets
    assert torch.allclose(colour_fitted(mapped, targets, eps=1e-9), targets, atol=1e-4)
    assert torch.allclose(colour_fitted(mapped, targets), targets, atol=1e-2)  # eps shrinks the gain a little
    flat = torch.full_like(targets, 0.3)  # nothing to fit: the target's mean
    assert torch.allclose(colour_fitted(flat, targets), targets.mean(dim=(-3, -2, -1), keepdim=True).expand_as(targets), atol=1e-6)


def test_the_colour_invariant_term_scores_copies_of_the_blend_like_the_blend_and_rewards_only_separation():
    left, top = _stripes(-1), _stripes(-2)
    targets = torch.stack([0.5 + 0.5 * left, 0.5 * top], dim=1)  # a bright and a dark scene
    blend = targets.mean(dim=1)
    copies = torch.stack([1.3 * blend, 0.7 * blend], dim=1)
    same = torch.stack([blend, blend], dim=1)
    eq2_copies, eq2_same = pit_loss(copies, targets), pit_loss(same, targets)
    assert float(eq2_copies.loss) < float(eq2_same.loss)  # Eq. 2 rewards the copies
    term = [colour_invariant_losses(o, targets, r.assignment).sum() for o, r in ((copies, eq2_copies), (same, eq2_same))]
    assert float(term[0]) == pytest.approx(float(term[1]), rel=1e-2)  # this term does not (up to eps)
    separated = torch.stack([0.9 * targets[:, 0] + 0.1 * targets[:, 1], 0.1 * targets[:, 0] + 0.9 * targets[:, 1]], dim=1)
    assert float(colour_invariant_losses(separated, targets, pit_loss(separated, targets).assignment).sum()) < 0.5 * float(term[1])
    weighted = pit_loss(copies, targets, colour_invariant_weight=2.0)
    assert float(weighted.loss) == pytest.approx(float(eq2_copies.loss + 2.0 * term[0] / len(targets)), rel=1e-5)
    outputs = copies.clone().requires_grad_(True)
    pit_loss(outputs, targets, colour_invariant_weight=1.0).loss.backward()
    assert outputs.grad.abs().sum() > 0


def test_light_labels_mark_the_blends_that_hold_a_light_and_not_two_real_videos(shared_videos):
    """Lights as training draws them (flat, ramps, soft spots) beside real decoded clips: every
    pair with a light is labelled 1, every pair of two real clips 0."""
    import numpy as np

    from centrifuge.data import center_crop, resize_shortest_side, to_clip
    from centrifuge.losses import light_labels
    from centrifuge.synthetic import draw_light, render_light
    from centrifuge.video import read_clip

    clips = [center_crop(resize_shortest_side(to_clip(read_clip(shared_videos / name, 0, 8)), 64), 64)
             for name in ("bikes.mp4", "cup.mp4", "carphone_pristine.mp4", "tree.avi")]
    rng = np.random.default_rng(0)
    lights = [render_light(draw_light(rng), 8, 64, 64) for _ in range(24)]
    with_light = torch.stack([torch.stack([clips[i % 4], light][:: 1 if i % 2 else -1]) for i, light in enumerate(lights)])
    two_videos = torch.stack([torch.stack([clips[i], clips[j]]) for i in range(4) for j in range(4) if i != j])
    assert light_labels(with_light).tolist() == [1.0] * 24
    assert light_labels(two_videos).tolist() == [0.0] * 12


def test_the_keep_term_is_zero_on_the_kept_outputs_and_counts_only_blends_without_a_light():
    from centrifuge.losses import keep_loss

    torch.manual_seed(0)
    kept = torch.rand(3, 4, 3, 4, 8, 8)
    moved = kept + 0.1 * torch.randn_like(kept)
    holds_light = torch.tensor([0.0, 1.0, 0.0])
    assert float(keep_loss(kept, kept, holds_light)) == 0.0
    assert torch.allclose(keep_loss(moved, kept, holds_light), reconstruction_loss(moved, kept).sum(dim=1)[[0, 2]].mean())
    light_moved = kept.clone()
    light_moved[1] += 1.0  # only the blend that holds a light changed
    assert float(keep_loss(light_moved, kept, holds_light)) == 0.0
    assert float(keep_loss(moved, kept, torch.ones(3))) == 0.0
