"""A split's images as a ``torch.utils.data.Dataset`` that decodes them when asked, not before.

At the paper's scale (20k training and 7k test images at 256 px) the splits as float32 tensors
would take ~21 GB per process, and notebooks 03/04 never look at the training images. ``Images``
holds file paths; it keeps the decoded pixels as uint8 (a quarter of float32) only while the whole
set fits ``HOLD_BYTES``, and otherwise reads each file again when indexed. Indexing follows
tensors: a slice is a view (nothing decoded), an index list or tensor is a float copy
(N, 3, H, W) in [-1, 1], an int is one image (the Dataset protocol, for a ``DataLoader``), and
``split(n)`` yields float chunks as ``Tensor.split`` does. In-memory tensors (tests, generated
images) wrap into the same type with ``as_images``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .plotting import from_uint8

HOLD_BYTES = 1 << 30
"""A file-backed set keeps its decoded uint8 pixels in memory when they take at most this much
(1 GiB: the toy sets always, 256 px sets up to ~5k images); larger ones are read from disk per use."""


def open_rgb(path: Path, fix: str) -> tuple[Image.Image, str | None]:
    """Read ``path`` as 8-bit RGB (``to_rgb``); an unreadable file raises an error naming it and ``fix``."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path} is not a readable image ({type(e).__name__}: {e}): {fix}") from None


def to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """8-bit RGB, and what the conversion did (None: the image was RGB already). 16-bit images are
    scaled to 8 bits (PIL's own conversion saturates them to white); alpha is dropped."""
    if img.mode == "RGB":
        return img, None
    if img.mode.startswith("I"):  # 16-bit (I;16, I;16B) or 32-bit integer grayscale
        arr = np.asarray(img).astype(np.int64)
        arr = arr >> 8 if img.mode.startswith("I;16") or arr.max() > 255 else arr
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert("RGB"), f"{img.mode} (16-bit) scaled to 8-bit RGB"
    what = {"L": "grayscale", "LA": "grayscale with alpha", "RGBA": "RGBA", "P": "palette", "PA": "palette with alpha",
            "CMYK": "CMYK", "1": "1-bit"}.get(img.mode, img.mode)
    note = f"{what} converted to RGB" + (" (alpha dropped)" if "A" in img.mode else "")
    return img.convert("RGB"), note


def read_rgb(path: Path, size: int | None, fix: str) -> tuple[np.ndarray, str | None]:
    """One file as (H, W, 3) uint8 RGB, resized (bicubic) to ``size`` when given; the second value
    names the file and its size when it was resized. Unreadable: an error naming it and ``fix``."""
    img, _ = open_rgb(path, fix)
    resized = None
    if size is not None and img.size != (size, size):
        resized = f"{path} ({img.size[0]}×{img.size[1]})"
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img), resized


class _Files:
    """Decoded on demand from ``paths``; held as uint8 when ``hold``. Warns once if it resizes."""

    def __init__(self, paths: list[Path], size: int, fix: str, hold: bool) -> None:
        self.paths, self.size, self.fix = paths, size, fix
        self.held: np.ndarray | None = np.zeros((len(paths), size, size, 3), np.uint8) if hold else None
        self.loaded = np.zeros(len(paths), bool)
        self.warned = False

    def get(self, idx: np.ndarray) -> torch.Tensor:
        out, resized = np.empty((len(idx), self.size, self.size, 3), np.uint8), []
        for j, i in enumerate(idx):
            if self.held is not None and self.loaded[i]:
                out[j] = self.held[i]
                continue
            out[j], note = read_rgb(self.paths[i], self.size, self.fix)
            if note:
                resized.append(note)
            if self.held is not None:
                self.held[i], self.loaded[i] = out[j], True
        if resized and not self.warned:
            self.warned = True
            warnings.warn(f"images in {Path(self.paths[0]).parent} are not {self.size}×{self.size} px (e.g. "
                          f"{resized[0]}): resized (bicubic)", stacklevel=4)
        return from_uint8(out)


class _Tensor:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def get(self, idx: np.ndarray) -> torch.Tensor:
        return self.x[torch.from_numpy(idx).long()]


class Images(torch.utils.data.Dataset):
    """Images of one split: see the module docstring. ``files(folder, names, size)`` builds one."""

    def __init__(self, store: _Files | _Tensor, index: np.ndarray, shape: tuple[int, int, int]) -> None:
        self._store, self._index, self._image_shape = store, index, shape

    @classmethod
    def files(cls, folder: str | Path, names: Sequence[str], size: int, fix: str = "",
              hold_bytes: int = HOLD_BYTES) -> "Images":
        """``folder``/``names`` at ``size`` px; ``fix``: what an unreadable file's error tells the user to do."""
        paths = [Path(folder) / f for f in names]
        fix = fix or f"rebuild the dataset (delete {Path(folder)} and run notebook 00 again)"
        store = _Files(paths, size, fix, hold=len(paths) * 3 * size * size <= hold_bytes)
        return cls(store, np.arange(len(paths)), (3, size, size))

    @classmethod
    def concat(cls, parts: Sequence["Images"]) -> "Images":
        """One set of ``parts`` in order (file-backed parts stay file-backed)."""
        if all(isinstance(p._store, _Files) for p in parts):
            first = parts[0]._store
            paths = [p._store.paths[i] for p in parts for i in p._index]
            hold = first.held is not None and all(p._store.held is not None for p in parts)
            return cls(_Files(paths, first.size, first.fix, hold), np.arange(len(paths)), parts[0]._image_shape)
        return as_images(torch.cat([p.load() for p in parts]))

    def __len__(self) -> int:
        return len(self._index)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self._image_shape)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return Images(self._store, self._index[key], self._image_shape)
        if isinstance(key, (int, np.integer)):
            return self._store.get(self._index[[key]])[0]
        idx = _positions(key)
        return self._store.get(self._index[idx]) if len(idx) else torch.empty(0, *self._image_shape)

    def take(self, idx: Sequence[int] | torch.Tensor) -> "Images":
        """The images at ``idx``, in that order, still unread (indexing with ``[]`` reads them)."""
        return Images(self._store, self._index[_positions(idx)], self._image_shape)

    def load(self) -> torch.Tensor:
        """All of them as one float tensor: for sets a caller needs whole (the edited ones' originals)."""
        return self[np.arange(len(self))]

    def split(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Float chunks of ``batch_size`` images in order, as ``Tensor.split``."""
        for i in range(0, len(self), batch_size):
            yield self[i:i + batch_size].load()

    def batches(self, order: torch.Tensor, batch_size: int, workers: int | None = None) -> Iterator[torch.Tensor]:
        """The images in ``order``, ``batch_size`` at a time; read by ``workers`` ``DataLoader``
        processes when they come from disk (None: up to 4 when a GPU waits, since decoding 256 px PNGs
        would otherwise starve it; none on a CPU, where they would take the cores the model uses)."""
        if workers is None:
            workers = min(4, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0
        if workers <= 0 or not isinstance(self._store, _Files) or self._store.held is not None:
            for idx in order.split(batch_size):
                yield self[idx]
            return
        yield from torch.utils.data.DataLoader(torch.utils.data.Subset(self, order.tolist()), batch_size=batch_size,
                                               num_workers=workers)


def _positions(key) -> np.ndarray:
    """Indices (a tensor, a sequence or a boolean mask) as int64 positions."""
    idx = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key, dtype=np.int64)
    return (np.flatnonzero(idx) if idx.dtype == bool else idx).astype(np.int64)


def as_images(x: torch.Tensor | Images) -> Images:
    """``x`` as ``Images`` (a tensor (N, 3, H, W) is wrapped, not copied)."""
    if isinstance(x, Images):
        return x
    return Images(_Tensor(x), np.arange(len(x)), tuple(x.shape[1:]))
