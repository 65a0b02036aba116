"""The photo bank: a split by name, the wallpaper cache, the bank tensor."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from centrifuge.photos import Photo, available_photos, bank_tensor, build_photo_cache, is_held_back, photo_cache_dir


def test_the_split_is_by_name_disjoint_and_a_set_stays_together():
    train, held = available_photos("train"), available_photos("held-back")
    assert train and held and not {p.name for p in train} & {p.name for p in held}
    names = [f"photo{i}" for i in range(400)]
    share = sum(map(is_held_back, names)) / len(names)
    assert 0.18 < share < 0.32
    assert all(is_held_back(f"{n}#1") == is_held_back(n) for n in names)


def test_the_wallpaper_cache_is_built_from_installed_packages_and_used(tmp_path, monkeypatch):
    root = tmp_path / "share"
    kde = root / "wallpapers" / "Kite" / "contents" / "images"
    kde.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)).save(kde / "500x300.png")
    Image.fromarray(rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)).save(kde / "150x90.png")  # the smaller one is skipped
    (root / "wallpapers" / "Abstract" / "contents" / "images").mkdir(parents=True)  # not a curated photograph
    monkeypatch.setenv("CENTRIFUGE_CACHE", str(tmp_path / "cache"))
    before = len(available_photos("all"))
    cache = build_photo_cache(root, short_side=64)
    assert cache == photo_cache_dir()
    manifest = json.loads((cache / "manifest.json").read_text())
    assert [m["name"] for m in manifest] == ["Kite"] and manifest[0]["source"].endswith("500x300.png")
    assert Image.open(cache / "Kite.jpg").size == (107, 64)
    photos = available_photos("all")
    assert len(photos) == before + 1 and photos[-1].source == "wallpaper"
    assert available_photos("all", wallpapers=False)[-1].source == "scikit-image"


def test_bank_tensor_crops_to_its_aspect_and_resizes():
    wide = Photo("wide", "video", torch.zeros(3, 10, 40, dtype=torch.uint8))
    wide.image[:, :, 15:25] = 255  # a bright middle band survives the centre crop
    bank = bank_tensor([wide], 20, 30)
    assert bank.shape == (1, 3, 20, 30) and bank.dtype == torch.uint8
    assert int(bank[0, 0, 10, 15]) == 255 and int(bank[0, 0, 10, 0]) == 0
