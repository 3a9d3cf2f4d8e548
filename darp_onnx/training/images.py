"""A folder of images (jpg, png, bmp, webp) decoded with Pillow into one model input's samples.

Files are found recursively (class sub-folders are fine; their names are not used as labels). A file
Pillow cannot decode is skipped and counted; a folder with no image that decodes is an error.
With `max_samples`, a seeded random choice of the files is decoded (skipped files are replaced by others).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from darp_onnx.errors import BadInputError
from darp_onnx.training.preprocess import InputLayout, Preprocess, image_to_array

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_SAMPLES_DEFAULT = 1000  # images decoded from a larger folder unless --max-samples says otherwise
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass
class DecodedImages:
    samples: np.ndarray  # N x (model layout), the model's dtype
    files: list[Path]
    skipped: list[str]  # 'file: reason' for each file that did not decode


def decode(path: Path, spec: Preprocess, layout: InputLayout) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on odd EXIF and palette transparency
        with Image.open(path) as image:
            image.load()
            return image_to_array(image, spec, layout)


def load_images(files: list[Path], spec: Preprocess, layout: InputLayout, *, source: str,
                max_samples: int | None = None, seed: int = 0) -> DecodedImages:
    """Decode `files` in order (all of them, or a seeded random `max_samples` of them)."""
    if not files:
        raise BadInputError(f"{source}: holds no image files ({', '.join(IMAGE_SUFFIXES)}); check --data")
    order = list(range(len(files)))
    if max_samples is not None and max_samples < len(files):
        order = list(np.random.default_rng(seed).permutation(len(files)))
    wanted = len(files) if max_samples is None else min(max_samples, len(files))
    samples: list[np.ndarray] = []
    used: list[Path] = []
    skipped: list[str] = []
    for index in order:
        if len(samples) == wanted:
            break
        try:
            samples.append(decode(files[index], spec, layout))
            used.append(files[index])
        except _DECODE_ERRORS as exc:
            skipped.append(f"{files[index]}: {type(exc).__name__}")
    if not samples:
        raise BadInputError(f"{source}: none of its {len(files)} image file(s) could be decoded "
                            f"(first: {skipped[0]}); check --data")
    return DecodedImages(np.stack(samples), used, skipped)
