"""Digits data for the sample models: sklearn's bundled 8x8 digits upsampled to 1x32x32.

Two 5-class tasks: *source* = digits 0-4 (labels 0..4), *target* = digits 5-9 (labels 5..9
remapped to 0..4). Pixels are scaled to [0, 1], bilinearly upsampled, then normalised with the
mean/std of the source train split (both tasks use the same mean/std). Files hold float32 NCHW
``train_input``/``test_input``, int64 ``train_labels``/``test_labels`` and scalar ``mean``/``std``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
TASKS = {"source": (0, 1, 2, 3, 4), "target": (5, 6, 7, 8, 9)}
SIZE = 32
KEYS = ("train_input", "train_labels", "test_input", "test_labels")


def _upsample(images: np.ndarray) -> np.ndarray:
    """[N,8,8] pixels in 0..16 -> [N,1,32,32] float32 in [0,1] (bilinear, align_corners=False)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float32) / 16.0)[:, None]
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).numpy()


def make_tasks(seed: int = 0, test_size: float = 0.3) -> dict[str, dict[str, np.ndarray]]:
    """Build both tasks: stratified, seeded train/test splits, normalised by source-train stats."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images, labels = _upsample(digits.images), digits.target.astype(np.int64)
    raw: dict[str, tuple[np.ndarray, ...]] = {}
    for task, classes in TASKS.items():
        keep = np.isin(labels, classes)
        x, y = images[keep], labels[keep] - classes[0]
        raw[task] = tuple(train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed))
    mean = float(raw["source"][0].mean())
    std = float(raw["source"][0].std())
    tasks = {}
    for task, (x_tr, x_te, y_tr, y_te) in raw.items():
        tasks[task] = {
            "train_input": ((x_tr - mean) / std).astype(np.float32),
            "train_labels": y_tr.astype(np.int64),
            "test_input": ((x_te - mean) / std).astype(np.float32),
            "test_labels": y_te.astype(np.int64),
            "mean": np.float32(mean),
            "std": np.float32(std),
        }
    return tasks


def save_tasks(tasks: dict[str, dict[str, np.ndarray]], out_dir: Path = DATA_DIR) -> dict[str, Path]:
    """Write ``digits_<task>.npz`` (compressed) per task; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for task, arrays in tasks.items():
        paths[task] = out_dir / f"digits_{task}.npz"
        np.savez_compressed(paths[task], **arrays)
    return paths


def load(task: str = "source", data_dir: Path | str = DATA_DIR) -> dict[str, np.ndarray]:
    """Normalised float32 inputs [N,1,32,32] and int64 labels of one task ('source' or 'target')."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    with np.load(Path(data_dir) / f"digits_{task}.npz") as npz:
        out = {k: npz[k] for k in KEYS}
    for k in ("train_input", "test_input"):
        out[k] = out[k].astype(np.float32, copy=False)
    for k in ("train_labels", "test_labels"):
        out[k] = out[k].astype(np.int64, copy=False)
    return out
