"""Training data: scikit-learn's digits (bundled, the default), MNIST IDX files and CIFAR-10
binary batches from a folder the user gives (nothing is downloaded).

Every loader returns ``(x_train, y_train, x_test, y_test)``: float32 NCHW images in [0, 1]
and int64 labels.  A missing or malformed file raises :class:`DataError` (a ValueError)
whose one-line message names the file.

* ``mnist:DIR``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz``);
  the ``-idx3-ubyte`` / ``.idx3-ubyte`` spellings are both accepted.
* ``cifar10:DIR``: ``data_batch_1.bin`` .. ``data_batch_5.bin`` (those present, at least
  one) and ``test_batch.bin``, the "binary version" (each record: 1 label byte, 3072 pixel
  bytes, channel-major 32x32); DIR may also be its ``cifar-10-batches-bin`` parent.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist", "cifar10")


class DataError(ValueError):
    """A missing or malformed data file (the message names it)."""


# ------------------------------------------------------------------------------ MNIST IDX

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """One IDX file (raw or gzip): magic 0x0000TTDD (type TT, DD dimensions), big-endian
    uint32 sizes, then the data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    nd = raw[3]
    if len(raw) < 4 + 4 * nd:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", nd, 4))
    dt = np.dtype(_IDX_TYPES[raw[2]])
    n = int(np.prod(dims)) if dims else 0
    body = raw[4 + 4 * nd:]
    if len(body) != n * dt.itemsize:
        raise DataError(f"{path}: IDX header says {dims} ({n * dt.itemsize} bytes of data), "
                        f"file has {len(body)}")
    return np.frombuffer(body, dt, n).reshape(dims)


def _find(folder: Path, stems: list[str]) -> Path:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = folder / (stem + suffix)
            if p.is_file():
                return p
    raise DataError(f"{folder / stems[0]}: file not found (nor .gz, nor "
                    f"{', '.join(stems[1:])})" if len(stems) > 1 else
                    f"{folder / stems[0]}: file not found (nor .gz)")


def load_mnist(folder) -> tuple:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: MNIST folder not found")
    out = []
    for split in ("train", "t10k"):
        ip = _find(folder, [f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"])
        lp = _find(folder, [f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"])
        img, lab = read_idx(ip), read_idx(lp)
        if img.ndim != 3:
            raise DataError(f"{ip}: expected a 3-D image array, got shape {img.shape}")
        if lab.ndim != 1 or lab.shape[0] != img.shape[0]:
            raise DataError(f"{lp}: {lab.shape} labels for {img.shape[0]} images in {ip.name}")
        if lab.size and (lab.min() < 0 or lab.max() > 9):
            raise DataError(f"{lp}: labels outside 0..9")
        out += [(img.astype(np.float32) / 255.0)[:, None], lab.astype(np.int64)]
    return tuple(out)


# ------------------------------------------------------------------------------ CIFAR-10

_CIFAR_REC = 1 + 3 * 32 * 32


def _cifar_batch(path: Path):
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if not raw or len(raw) % _CIFAR_REC:
        raise DataError(f"{path}: {len(raw)} bytes is not a whole number of {_CIFAR_REC}-byte "
                        f"CIFAR-10 records")
    a = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_REC)
    y = a[:, 0].astype(np.int64)
    if y.max() > 9:
        raise DataError(f"{path}: label {int(y.max())} outside 0..9 (not a CIFAR-10 batch?)")
    x = (a[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return x, y


def load_cifar10(folder) -> tuple:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: CIFAR-10 folder not found")
    if not (folder / "test_batch.bin").exists() and (folder / "cifar-10-batches-bin").is_dir():
        folder = folder / "cifar-10-batches-bin"
    train = [folder / f"data_batch_{i}.bin" for i in range(1, 6)]
    train = [p for p in train if p.exists()]
    if not train:
        raise DataError(f"{folder / 'data_batch_1.bin'}: file not found")
    test = folder / "test_batch.bin"
    if not test.exists():
        raise DataError(f"{test}: file not found")
    parts = [_cifar_batch(p) for p in train]
    xt, yt = _cifar_batch(test)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt)


# ------------------------------------------------------------------------------ entry point

def parse_spec(text: str) -> tuple[str, str | None]:
    """'digits', 'mnist:DIR' or 'cifar10:DIR' -> (name, folder)."""
    name, sep, folder = text.partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; use digits, mnist:DIR or cifar10:DIR")
    if name == "digits":
        if sep:
            raise DataError("digits is bundled with scikit-learn: give no folder")
        return name, None
    if not folder:
        raise DataError(f"{name} needs a folder: {name}:DIR")
    return name, folder


def load(text: str = "digits", seed: int = 0) -> tuple:
    """Load a data set by its spec string (see :func:`parse_spec`)."""
    name, folder = parse_spec(text)
    if name == "digits":
        from .nn import load_digits_split
        return load_digits_split(seed)
    return load_mnist(folder) if name == "mnist" else load_cifar10(folder)


def fit_images(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Images resized to ``hw`` for a network with a fixed input: nearest-neighbour
    upscaling by the largest whole factor that leaves a margin, then zero padding (8x8
    digits -> 3x to 24x24 + 4 pixels each side = 32x32; 28x28 MNIST -> 2 pixels of padding,
    the classic LeNet-5 input).  Larger images are centre-cropped."""
    H, W = hw
    h, w = x.shape[2:]
    if (h, w) == (H, W):
        return x
    f = max(1, min((H - 1) // h, (W - 1) // w)) if h < H and w < W else 1
    if f > 1 and h * f > H - 8:     # keep a margin of at least 4 pixels when upscaling
        f = max(1, min((H - 8) // h, (W - 8) // w))
    if f > 1:
        x = x.repeat(f, axis=2).repeat(f, axis=3)
    h, w = x.shape[2:]
    if h > H:
        t = (h - H) // 2
        x = x[:, :, t:t + H]
    if w > W:
        t = (w - W) // 2
        x = x[:, :, :, t:t + W]
    h, w = x.shape[2:]
    pt, pl = (H - h) // 2, (W - w) // 2
    return np.pad(x, ((0, 0), (0, 0), (pt, H - h - pt), (pl, W - w - pl))).astype(np.float32)
