"""Visual Centrifuge: separate a video into layers (Alayrac, Carreira, Zisserman, CVPR 2019).

>>> import centrifuge
>>> model = centrifuge.Centrifuge.from_pretrained()   # doctest: +SKIP
>>> layers = model.separate(video)                    # (T, H, W, 3) -> (n, T, H, W, 3)  # doctest: +SKIP
>>> i, j = centrifuge.most_distant_pair(layers)       # doctest: +SKIP
"""

__version__ = "0.1.0"

__all__ = ["Centrifuge", "most_distant_pair", "__version__"]


def __getattr__(name: str):
    """The model's names load on first use, not with the package: the command line must set up the
    process (``cli.tune_for_streaming``) before torch loads its OpenMP runtime."""
    if name in ("Centrifuge", "most_distant_pair"):
        from . import separate

        return getattr(separate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
