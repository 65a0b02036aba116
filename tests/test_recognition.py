"""The downstream recognition protocol (section 4.1) and the classifier trained for it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from centrifuge.data import LabelledSyntheticSource
from centrifuge.recognition import (LabelledClips, VideoClassifier, load_classifier, run_recognition_experiment, save_classifier,
                                    train_classifier, two_label_score)


def test_two_label_score_counts_the_true_labels_found():
    predictions = torch.tensor([[2, 1], [1, 1], [3, 4], [1, 5]])
    truth = torch.tensor([[1, 2], [1, 2], [1, 2], [1, 2]])
    assert two_label_score(predictions, truth).tolist() == [1.0, 0.5, 0.0, 0.5]


def channel_classifier(video: torch.Tensor) -> torch.Tensor:
    """Class c = colour channel c: perfect on pure primaries, and top-2 finds both in their blend."""
    return video.mean(dim=(2, 3, 4))


class Oracle(torch.nn.Module):
    """Returns the true layers of a known blend (and a grey third layer); identity when ``cheat`` is off."""

    def __init__(self, pairs: torch.Tensor, cheat: bool):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.pairs, self.cheat = pairs, cheat

    def forward(self, blend):
        if not self.cheat:
            return torch.stack([blend, blend, blend], dim=1)
        found = [int(((self.pairs.mean(1) - b).abs().flatten(1).sum(1)).argmin()) for b in blend]
        layers = self.pairs[found]
        return torch.cat([layers, torch.full_like(layers[:, :1], 0.5)], dim=1)


def primaries(labels: list[tuple[int, int]]) -> torch.Tensor:
    clips = torch.zeros(len(labels), 2, 3, 4, 8, 8)
    for k, (a, b) in enumerate(labels):
        clips[k, 0, a] = 1.0
        clips[k, 1, b] = 1.0
    return clips


def test_protocol_scores_blend_separated_and_clean_pairs():
    labels = [(0, 1), (1, 2), (2, 0), (0, 2)]
    pairs, truth = primaries(labels), torch.tensor(labels)
    perfect = run_recognition_experiment(Oracle(pairs, cheat=True), channel_classifier, pairs, truth)
    assert (perfect.blend_top2, perfect.separated_top1, perfect.clean_top1, perfect.single_clip_accuracy) == (1.0, 1.0, 1.0, 1.0)
    # A separator that returns the blend gives the same top-1 class twice: one label of two.
    identity = run_recognition_experiment(Oracle(pairs, cheat=False), channel_classifier, pairs, truth)
    assert identity.separated_top1 == 0.5 and identity.clean_top1 == 1.0


def test_classifier_learns_the_labelled_generator_and_round_trips_through_safetensors(tmp_path):
    source = LabelledSyntheticSource(num_classes=4)
    clips = LabelledClips(source, 48, 4, 32, train=False, seed=5)
    batch = torch.stack([clips[i][0] for i in range(48)])
    labels = torch.tensor([clips[i][1] for i in range(48)])
    torch.manual_seed(0)
    before = F.cross_entropy(VideoClassifier(4).eval()(batch), labels)
    model = train_classifier(source, 4, steps=50, num_frames=4, size=32, batch_size=16, workers=0)
    with torch.no_grad():
        after = F.cross_entropy(model(batch), labels)
        accuracy = float((model(batch).argmax(1) == labels).float().mean())
    assert after < 0.8 * before and accuracy > 0.4  # chance is 0.25
    path = save_classifier(model, tmp_path / "clf.safetensors")
    with torch.no_grad():
        assert torch.equal(load_classifier(path)(batch), model(batch))
