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


SMALL_CROP = 0.6  # below this share of each image kept by a crop, the images note says so


@dataclass
class DecodedImages:
    samples: np.ndarray  # N x (model layout), the model's dtype
    files: list[Path]
    skipped: list[str]  # 'file: reason' for each file that did not decode
    kept_area: float = 1.0  # the mean share of each image's area the resize keeps (a crop throws the rest away)


def decode(path: Path, spec: Preprocess, layout: InputLayout) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on odd EXIF and palette transparency
        with Image.open(path) as image:
            image.load()
            return image_to_array(image, spec, layout), kept_share(image.size, spec, (layout.width, layout.height))


def kept_share(image_size: tuple[int, int], spec: Preprocess, size: tuple[int, int]) -> float:
    """The share of an image's area (width, height) that `spec`'s resize to `size` keeps: a centre crop to
    another aspect ratio drops the sides (a 10:1 text line cropped to a 2:1 input keeps a fifth of it)."""
    if spec.resize == "stretch-crop":
        return spec.crop ** 2
    if spec.resize != "crop" or min(image_size) < 1 or min(size) < 1:
        return 1.0
    image_aspect, input_aspect = image_size[0] / image_size[1], size[0] / size[1]
    return min(image_aspect, input_aspect) / max(image_aspect, input_aspect) * spec.crop ** 2


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
    shares: list[float] = []
    used: list[Path] = []
    skipped: list[str] = []
    for index in order:
        if len(samples) == wanted:
            break
        try:
            sample, share = decode(files[index], spec, layout)
            samples.append(sample)
            shares.append(share)
            used.append(files[index])
        except _DECODE_ERRORS as exc:
            skipped.append(f"{files[index]}: {type(exc).__name__}")
    if not samples:
        raise BadInputError(f"{source}: none of its {len(files)} image file(s) could be decoded "
                            f"(first: {skipped[0]}); check --data")
    return DecodedImages(np.stack(samples), used, skipped, float(np.mean(shares)))


def images_note(source: str, samples: int, skipped: list[str], preprocess: dict) -> str:
    """How image files became samples, said before the search: a folder read in a range the model does not
    take is fitted and measured on the wrong values without any error (opennsfw, which takes BGR 0-255 minus
    the Caffe mean, was fed RGB in [0, 1]: its score on those inputs did not follow the real one)."""
    scale, mean, std = preprocess["scale"], preprocess["mean"], preprocess["std"]
    values = f"pixel x {scale:.4g}" + (f" - mean {'/'.join(f'{m:g}' for m in mean)}" if any(mean) else "")
    values += f", / std {'/'.join(f'{v:g}' for v in std)}" if any(v != 1 for v in std) else ""
    dropped = f" ({len(skipped)} could not be decoded, first: {skipped[0]})" if skipped else ""
    kept = preprocess.get("kept_area", 1.0)
    cropped = (f"; the crop keeps {kept:.0%} of each image on average (their aspect ratios differ from the "
               "input's): if your deployment feeds whole images, give --preprocess with resize=stretch or "
               "resize=height") if kept < SMALL_CROP else ""
    return (f"{samples} images from {source}{dropped}: {preprocess['channels'].upper()}, resized "
            f"({preprocess['resize']}) to {preprocess['size']} (height x width), values {values} (preset "
            f"{preprocess['chosen']}){cropped}; check that this is what your deployment feeds the model, or give "
            "--preprocess")
