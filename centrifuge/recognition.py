"""The downstream recognition protocol of section 4.1, and a small video classifier to run it with.

The paper tests an action classifier (I3D trained on Kinetics) on (a) blended pairs, (b) the two
layers the centrifuge separates them into, (c) the clean pairs. Each method makes two predictions:
the top 2 on the blend, the top 1 on each of the two videos otherwise. A pair scores 1 when both
true labels are among them, 0.5 when one is, 0 when neither.

No labelled video dataset ships with the project, so :class:`VideoClassifier` is trained here on
the labelled generator (:class:`~centrifuge.data.LabelledSyntheticSource`, the class is the
photograph the camera films) or on any folder of videos sorted into class sub-folders. The protocol
itself takes any classifier: a callable from ``(B, 3, T, H, W)`` in [0, 1] to ``(B, classes)`` scores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .checkpoint import load_weights, save_tensors
from .data import LayerPairs, blend_layers
from .losses import most_distant_pair
from .models.i3d import I3DEncoder

Classifier = Callable[[torch.Tensor], torch.Tensor]


class VideoClassifier(nn.Module):
    """A narrow I3D encoder, global average pooling and a linear layer."""

    def __init__(self, num_classes: int, final_endpoint: str = "Mixed_4f", width: float = 0.25):
        super().__init__()
        self.settings = {"num_classes": num_classes, "final_endpoint": final_endpoint, "width": width}
        self.encoder = I3DEncoder(3, final_endpoint, width)
        self.fc = nn.Linear(self.encoder.out_channels, num_classes)
        # The I3D port's BatchNorm momentum (0.01) suits 240k steps; a classifier trained for a few
        # hundred would be evaluated with running statistics still near their initial values.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.momentum = 0.1

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        features = self.encoder(video * 2 - 1)[self.encoder.final_endpoint]
        return self.fc(features.mean(dim=(2, 3, 4)))


class LabelledClips(Dataset):
    """``(clip, label)`` items from a labelled clip source, each a pure function of (seed, index)."""

    def __init__(self, source, length: int, num_frames: int, size: int, train: bool, seed: int = 0):
        self.source, self.length, self.num_frames, self.size, self.train, self.seed = source, length, num_frames, size, train, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        if not 0 <= item < self.length:  # also ends plain iteration over the dataset
            raise IndexError(item)
        rng = np.random.default_rng([self.seed, item])
        index = int(rng.integers(len(self.source)))
        clip = self.source.clip(index, self.num_frames, self.size, self.train, rng)
        return clip, int(self.source.label(index))


def train_classifier(source, num_classes: int, steps: int = 300, num_frames: int = 16, size: int = 64, batch_size: int = 16,
                     lr: float = 2e-3, seed: int = 0, workers: int = 2, log: Callable[[str], None] | None = None) -> VideoClassifier:
    """Train a :class:`VideoClassifier` with Adam and cross-entropy on clean labelled clips (CPU)."""
    torch.manual_seed(seed)
    model = VideoClassifier(num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loader = DataLoader(LabelledClips(source, steps * batch_size, num_frames, size, train=True, seed=seed),
                        batch_size=batch_size, num_workers=workers, persistent_workers=False)
    model.train()
    started, recent = time.perf_counter(), []
    for step, (clips, labels) in enumerate(loader, start=1):
        loss = F.cross_entropy(model(clips), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-20:]
        if log and (step % 50 == 0 or step == steps):
            log(f"step {step}/{steps}: loss {np.mean(recent):.3f} ({time.perf_counter() - started:.0f} s)")
    return model.eval()


def save_classifier(model: VideoClassifier, path: str | Path) -> Path:
    """Weights as ``path`` (.safetensors) and the architecture as a ``.json`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    path.with_suffix(".json").write_text(json.dumps({"kind": "video_classifier", **model.settings}, indent=2))
    return path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> VideoClassifier:
    """The inverse of :func:`save_classifier`; never unpickles."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if path.suffix != ".safetensors" or not meta_path.exists():
        raise ValueError(f"{path}: a classifier is a .safetensors file with its .json beside it (centrifuge train-classifier)")
    meta = json.loads(meta_path.read_text())
    model = VideoClassifier(meta["num_classes"], meta["final_endpoint"], meta["width"])
    model.load_state_dict(load_weights(path))
    return model.to(device).eval()


def two_label_score(predictions: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The paper's two-label accuracy per pair: the share of the two true labels found among the
    two predictions (1, 0.5 or 0). ``predictions``, ``truth``: ``(N, 2)`` class indices."""
    found = [len(set(t.tolist()) & set(p.tolist())) / len(set(t.tolist())) for p, t in zip(predictions, truth)]
    return torch.tensor(found)


@dataclass
class RecognitionResult:
    blend_top2: float
    separated_top1: float
    clean_top1: float
    pairs: int
    single_clip_accuracy: float  # the classifier's plain top-1 accuracy on the clean clips

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def different_class_pairs(source, num_pairs: int, num_frames: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 2, 3, T, H, W)`` centre-cropped pairs whose two videos have different labels, and the labels."""
    dataset = LayerPairs([source], length=num_pairs * 20, num_frames=num_frames, crop_size=size, train=False, seed=seed)
    layers, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if item["labels"][0] != item["labels"][1] and item["labels"].min() >= 0:
            layers.append(item["layers"])
            labels.append(item["labels"])
            if len(layers) == num_pairs:
                break
    if len(layers) < num_pairs:
        raise ValueError("the data has too few labelled videos of different classes for the recognition protocol")
    return torch.stack(layers), torch.stack(labels)


@torch.no_grad()
def run_recognition_experiment(separator: nn.Module, classifier: Classifier, layers: torch.Tensor, labels: torch.Tensor,
                               batch_size: int = 4) -> RecognitionResult:
    """Section 4.1 on fixed pairs: top-2 on the blend (α = 0.5) vs top-1 on each of the two most
    distant separated layers vs top-1 on each clean video."""
    separator.eval()
    device = next(separator.parameters()).device
    blend_scores, separated_scores, clean_scores, single = [], [], [], []
    for start in range(0, len(layers), batch_size):
        pair = layers[start : start + batch_size].to(device)
        truth = labels[start : start + batch_size]
        b = pair.shape[0]
        blend = blend_layers(pair, torch.full((b,), 0.5, device=device))
        blend_scores.append(two_label_score(classifier(blend).topk(2, dim=1).indices.cpu(), truth))
        outputs = separator(blend).float().clamp(0, 1)
        chosen = torch.stack([outputs[k, list(most_distant_pair(outputs[k]))] for k in range(b)])
        separated = classifier(chosen.flatten(0, 1)).argmax(1).view(b, 2).cpu()
        separated_scores.append(two_label_score(separated, truth))
        clean = classifier(pair.flatten(0, 1)).argmax(1).view(b, 2).cpu()
        clean_scores.append(two_label_score(clean, truth))
        single.append((clean == truth).float().flatten())
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return RecognitionResult(mean(blend_scores), mean(separated_scores), mean(clean_scores), len(layers), mean(single))


def format_recognition(name: str, result: RecognitionResult) -> str:
    return "\n".join([
        f"two-label accuracy on {result.pairs} pairs of different classes, separator {name}",
        f"  (a) blend, top-2              {result.blend_top2:6.1%}",
        f"  (b) separated layers, top-1   {result.separated_top1:6.1%}",
        f"  (c) clean pairs, top-1        {result.clean_top1:6.1%}",
        f"  classifier top-1 on single clean clips: {result.single_clip_accuracy:.1%}",
    ])
