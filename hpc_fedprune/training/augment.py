"""Image augmentation of training batches: random crop with padding and horizontal flip.

``data.augment: crop_flip`` (``data.crop_padding: p``) transforms every training batch
of images ``(N, C, H, W)``, on the device, with no loop over samples: each image is padded
with ``p`` zeros on every side (zero is the channel mean: data are standardised before),
an ``H x W`` window is cut at a random offset (``top``, ``left`` uniform in ``0..2p``), and
the window is mirrored left-right with probability 1/2. ``p = 0`` only flips. Test data and
evaluation batches are never augmented.

Draws are keyed, never taken from a process-global generator: the draws of training step
``s`` come from ``numpy_rng(seed, Stream.AUGMENT, *key, s)``, where ``key`` names the
training stream (``(Stream.CLIENT, round, client)`` for a client's local training, the
exploration's and the shadow models' keys for theirs). A client's batches are therefore
transformed identically whichever rank trains it, alone or in a group, and after a resume.
Per sample the draws are, in this order, ``size`` tops, ``size`` lefts and ``size`` flips.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..rng import Stream, numpy_rng

AUGMENTATIONS = ("none", "crop_flip")


def check_augmentation(data_config, input_shape: tuple[int, ...]) -> None:
    """Refuse an augmentation the data cannot take (`InputError` naming the key).

    Parameters
    ----------
    data_config : DataConfig
        The run's ``data`` section (``augment``, ``crop_padding``).
    input_shape : tuple of int
        Shape of one sample.
    """
    if data_config.augment == "crop_flip" and len(input_shape) != 3:
        raise InputError(
            f"data.augment: crop_flip needs images (C, H, W), but {data_config.name} samples "
            f"have shape {tuple(input_shape)}; use data.augment=none"
        )


class Augmenter:
    """Keyed random crops and flips of training batches (see the module docstring).

    Parameters
    ----------
    kind : {'none', 'crop_flip'}
    padding : int
        Zeros added on every side before cropping.
    seed : int
        The run's seed.
    """

    def __init__(self, kind: str, padding: int, seed: int) -> None:
        if kind not in AUGMENTATIONS:
            raise InputError(f"data.augment must be one of {AUGMENTATIONS}, got {kind!r}")
        self.kind = kind
        self.padding = int(padding)
        self.seed = int(seed)

    @classmethod
    def from_config(cls, config) -> Augmenter:
        """The run's augmentation (``data.augment``, ``data.crop_padding``, ``runtime.seed``)."""
        return cls(config.data.augment, config.data.crop_padding, config.runtime.seed)

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``(size, 3)`` int64 draws from ``rng``: crop top, crop left, flip (0 or 1)."""
        span = 2 * self.padding + 1
        top = rng.integers(0, span, size)
        left = rng.integers(0, span, size)
        flip = rng.integers(0, 2, size)
        return np.stack([top, left, flip], axis=1).astype(np.int64)

    def draws(self, key: tuple[int, ...], step: int, size: int) -> np.ndarray:
        """The draws of training step ``step`` of the stream ``key`` (module docstring)."""
        rng = numpy_rng(self.seed, Stream.AUGMENT, *(int(k) for k in key), int(step))
        return self.draw(rng, size)

    def apply(self, x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Crop and flip each image of ``x`` ``(N, C, H, W)`` by its row of ``draws`` ``(N, 3)``.

        ``draws`` lives on ``x``'s device. Returns a new tensor; ``x`` is not modified.
        """
        n, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        device = x.device
        top, left, flip = draws[:, 0], draws[:, 1], draws[:, 2].bool()
        rows = top[:, None] + torch.arange(h, device=device)[None, :]
        cols = torch.arange(w, device=device).expand(n, w)
        cols = torch.where(flip[:, None], w - 1 - cols, cols) + left[:, None]
        return padded[
            torch.arange(n, device=device)[:, None, None, None],
            torch.arange(c, device=device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def batch(self, x: torch.Tensor, key: tuple[int, ...], step: int) -> torch.Tensor:
        """``x`` transformed with the draws of ``(key, step)``; ``x`` itself when disabled."""
        if not self.enabled:
            return x
        draws = torch.from_numpy(self.draws(key, step, len(x))).to(x.device)
        return self.apply(x, draws)

    def group_draws(
        self, keys: list[tuple[int, ...]], sizes: list[list[int]], width: int, device
    ) -> torch.Tensor:
        """Draws of a group's packed batches: ``(S, G, width, 3)`` on ``device``.

        ``keys[j]`` is client j's stream and ``sizes[j]`` its real batch sizes in step
        order (`batches.PackedGroup.sizes`); padding rows get zeros (their loss weight is
        0). Each client's rows are exactly the draws `batch` makes for it alone.
        """
        steps = max((len(s) for s in sizes), default=0)
        out = np.zeros((steps, len(keys), width, 3), dtype=np.int64)
        for j, (key, client_sizes) in enumerate(zip(keys, sizes, strict=True)):
            for s, n in enumerate(client_sizes):
                out[s, j, :n] = self.draws(key, s, n)
        return torch.from_numpy(out).to(device)
