"""Task losses: cross-entropy on labels, or distillation from the original model's outputs.

With distillation no labels are ever required: class-score outputs (rank 2, more than one column) are
matched with KL divergence of the softmaxes, every other output with an MSE scaled by the teacher's
variance, so outputs of different magnitudes weigh alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from darp_onnx.errors import BadInputError
from darp_onnx.validation.nonfinite import finite_target

# what the search and its scorers call: (the proxy's outputs for a batch, the batch's sample indices) -> loss
LossFn = Callable[[tuple[torch.Tensor, ...], np.ndarray], torch.Tensor]


def is_class_scores(array: np.ndarray | torch.Tensor) -> bool:
    return array.ndim == 2 and array.shape[1] > 1


def is_probabilities(array: np.ndarray | torch.Tensor) -> bool:
    """Class scores that are a Softmax's output: rows of non-negative values summing to 1. Taken as logits,
    their softmax is nearly flat (256 tempo classes: a loss of 0.002 where the pruned model had lost every
    decision), so the losses read them as probabilities (`log_probabilities`)."""
    if not is_class_scores(per_sample(array)):  # before any copy: the targets of a segmenter may be large
        return False
    values = np.asarray(per_sample(array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array),
                        np.float64)
    if not np.isfinite(values).all():
        return False
    return bool(values.min() >= -1e-6 and np.abs(values.sum(axis=1) - 1.0).max() < 1e-3)


def log_probabilities(scores: torch.Tensor, probabilities: bool, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities over axis 1 of class scores: the log-softmax of logits, or of the log of
    probabilities (the same distribution, sharpened or softened by `temperature`)."""
    logits = torch.log(scores.float().clamp_min(1e-12)) if probabilities else scores.float()
    return F.log_softmax(logits / temperature, dim=1)


def per_sample(array):
    """Outputs of a model run in micro-batches are stacked along a new first axis: [samples, 1, C] for a
    classifier with a fixed batch of 1. Drop that batch axis of 1 so class scores stay [samples, C]."""
    return array[:, 0] if array.ndim == 3 and array.shape[1] == 1 else array


class TaskLoss:
    """`loss(outputs, indices)` for a batch given by its sample indices into the data set."""

    def __init__(self, *, labels: np.ndarray | None = None, teacher: Sequence[np.ndarray] | None = None,
                 output_index: int = 0, reference: Sequence[np.ndarray] | None = None,
                 logits_of: Mapping[int, int] | None = None) -> None:
        """`reference`: the original's outputs, where labels are given (which outputs are probabilities);
        `logits_of`: a Softmax output's index -> the index of its logits, trained on in its place."""
        if (labels is None) == (teacher is None):
            raise ValueError("give labels or teacher outputs")
        self.labels = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.teacher = None if teacher is None else [torch.from_numpy(np.asarray(t, np.float32)) for t in teacher]
        self.output_index = output_index
        self.scales = None
        if self.teacher is not None:
            self.scales = [finite_variance(t) for t in self.teacher]
        self.probabilities = [is_probabilities(r) for r in (teacher if teacher is not None else reference or [])]
        self.logits_of = dict(logits_of or {})

    @property
    def mode(self) -> str:
        return "cross_entropy" if self.labels is not None else "distillation"

    def __call__(self, outputs: Sequence[torch.Tensor], indices: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(np.asarray(indices))
        if self.labels is not None:
            index = self.logits_of.get(self.output_index, self.output_index)
            logits = per_sample(outputs[index])
            return F.nll_loss(log_probabilities(logits, self._probabilities(index)), self.labels[idx].to(logits.device))
        total = outputs[0].new_zeros(())
        for index, (out, ref, scale) in enumerate(zip(outputs, self.teacher, self.scales, strict=False)):
            if not out.is_floating_point() or index in self.logits_of:  # integers carry no gradient; a Softmax's
                continue  # probabilities are matched through its logits
            total = total + output_loss(per_sample(out), ref[idx], scale, self._probabilities(index))
        return total / max(len(outputs) - len(self.logits_of), 1)

    def _probabilities(self, index: int) -> bool:
        return index < len(self.probabilities) and self.probabilities[index]


def output_loss(out: torch.Tensor, ref: torch.Tensor, scale: float, probabilities: bool,
                temperature: float = 1.0) -> torch.Tensor:
    """How far one output is from the teacher's `ref` (a batch of it): KL divergence of class scores (at
    `temperature`, times its square), else an MSE over `scale` (the teacher's variance), over the elements where
    the teacher gives numbers."""
    target, finite = finite_target(per_sample(ref.to(out.device)))
    if finite is not None:  # elements the original leaves NaN or infinite: nothing to match there
        return masked_mse(out.float(), target, finite) / scale
    if is_class_scores(target):
        t = temperature
        return t * t * F.kl_div(log_probabilities(out, probabilities, t), log_probabilities(target, probabilities, t),
                                reduction="batchmean", log_target=True)
    return F.mse_loss(out.float(), target) / scale


def finite_variance(teacher: torch.Tensor) -> float:
    """The teacher's variance over its finite elements (the MSE's scale)."""
    finite = teacher[torch.isfinite(teacher)]
    return float(finite.var().clamp_min(1e-8)) if finite.numel() > 1 else 1.0


def masked_mse(out: torch.Tensor, target: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """The MSE over the elements where `finite` holds (the original gives a number there)."""
    diff = torch.where(finite, out - target, torch.zeros_like(out))
    return diff.square().sum() / finite.sum().clamp_min(1)


def check_labels_fit(labels: np.ndarray, outputs: Sequence[np.ndarray], source: str) -> None:
    """Labels need a class-score output wide enough for the largest label."""
    first = per_sample(outputs[0])
    if not is_class_scores(first):
        raise BadInputError(
            f"{source}: labels were given but the model's first output has shape {tuple(first.shape)}, not "
            "class scores [N, classes]; drop the labels to distil from the original model instead"
        )
    if int(labels.max()) >= first.shape[1]:
        raise BadInputError(
            f"{source}: label {int(labels.max())} is out of range for {first.shape[1]} classes; "
            "use --new-head K (finetune) or fix the labels"
        )
