"""Visual Centrifuge: separate a video into layers (Alayrac, Carreira, Zisserman, CVPR 2019).

>>> import centrifuge
>>> model = centrifuge.Centrifuge.from_pretrained()   # doctest: +SKIP
>>> layers = model.separate(video)                    # (T, H, W, 3) -> (n, T, H, W, 3)  # doctest: +SKIP
>>> i, j = centrifuge.most_distant_pair(layers)       # doctest: +SKIP
"""

__version__ = "0.1.0"

from .separate import Centrifuge, most_distant_pair  # noqa: E402

__all__ = ["Centrifuge", "most_distant_pair", "__version__"]
