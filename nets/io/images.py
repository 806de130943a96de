"""Images in, model input out: Keras' loading and preprocessing, and ImageNet class names."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from nets.errors import InputError

# keras.applications.imagenet_utils: "caffe" flips RGB to BGR and subtracts the ImageNet channel
# means (BGR order); "tf" scales to [-1, 1]; "torch" scales to [0, 1] and standardises.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
MODES = ("caffe", "tf", "torch", "none")


def preprocess_mode(model: str) -> str:
    if model in MODES:
        return model
    from nets.zoo import PREPROCESS

    if model not in PREPROCESS:
        raise InputError(f"no preprocessing is known for {model!r}; give a mode: one of {', '.join(MODES)}")
    return PREPROCESS[model]


def preprocess(model: str, images) -> np.ndarray:
    """Keras' ``preprocess_input`` for ``model`` (a zoo name or a mode) on RGB NHWC images in
    0..255 (uint8 or float). Returns a new float32 array."""
    mode = preprocess_mode(model)
    x = np.asarray(images)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise InputError(f"preprocess expects RGB images shaped (H, W, 3) or (N, H, W, 3), got {x.shape}")
    if x.dtype.kind not in "uif":
        raise InputError(f"preprocess expects numeric pixels, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if mode == "caffe":
        return x[..., ::-1] - CAFFE_MEAN_BGR
    if mode == "tf":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode == "torch":
        return (x / np.float32(255.0) - TORCH_MEAN) / TORCH_STD
    return x


def load_image(path, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array resized to ``size`` = (H, W) with nearest-neighbour sampling,
    like keras.utils.load_img(target_size=...)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise InputError(f"image {str(p)!r} does not exist")
    try:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.NEAREST)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"image {str(p)!r} could not be read as an image: {e}") from None


def read_image(path, size: tuple[int, int], *, draft: bool = False) -> np.ndarray:
    """``load_image`` for collections: the same pixels (convert to RGB, nearest resize to ``size`` =
    (H, W), as keras.utils.load_img), and any failure of one file (missing, truncated, not an image,
    a mode Pillow cannot convert, a decompression bomb) as an ``InputError`` that names the file.

    ``draft=True`` lets Pillow's JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT while keeping at
    least ``size``: faster on large photos, but the pixels differ from Keras' (opt-in only)."""
    from PIL import Image

    p = Path(path)
    try:
        with Image.open(p) as im:
            if draft and im.format == "JPEG":
                im.draft("RGB", (size[1], size[0]))
            im = im.convert("RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.NEAREST)
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError(f"image {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"image {str(p)!r} is a folder, not an image file") from None
    except MemoryError:
        raise
    except Exception as e:       # noqa: BLE001 -- Pillow's decoders raise many types; one bad file is one error
        raise InputError(f"image {str(p)!r} could not be read as an image: {type(e).__name__}: {e}") from None


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    text = resources.files("nets").joinpath("data/imagenet_classes.txt").read_text()
    return text.split()


def top_k(probs: np.ndarray, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """Per sample, the k best (class index, ImageNet name when there are 1000 classes, score)."""
    probs = np.asarray(probs).reshape(len(probs), -1)
    names = imagenet_classes() if probs.shape[1] == 1000 else None
    out = []
    for row in probs:
        idx = np.argsort(row)[::-1][:k]
        out.append([(int(i), names[i] if names else f"class_{i}", float(row[i])) for i in idx])
    return out
