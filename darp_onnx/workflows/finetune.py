"""`finetune()`: retrain a (pruned) model on a new, small labelled task and write the validated result.

Flow: load -> check data and labels -> optional new head -> proxy -> inherit or re-initialise weights ->
Adam with a validation split and early stopping (best weights by validation loss) -> to_onnx ->
onnx checks -> onnxruntime (CPU) must equal the proxy -> atomic save.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from darp_onnx.errors import BadInputError, OptionError
from darp_onnx.load.numbers import check_finetune_numbers
from darp_onnx.load.preflight import check_loaded_model, check_run_memory
from darp_onnx.load.shapes import static_shapes
from darp_onnx.proxy import build_proxy
from darp_onnx.runtime import distributed
from darp_onnx.runtime.device import choose_device
from darp_onnx.search.loss import is_class_scores
from darp_onnx.training.batchnorm import insert_batchnorm
from darp_onnx.training.dataset import Dataset, check_dataset, load_dataset
from darp_onnx.training.head import find_head, replace_head
from darp_onnx.training.loop import LoopConfig, train_with_early_stopping
from darp_onnx.training.reinit import reinit_weights, set_batchnorm_mode
from darp_onnx.training.steps import predict, trainable_parameters
from darp_onnx.workflows.common import check_written, derived_path, open_source, output_path, save
from darp_onnx.workflows.outputs import check_paths_first

ProgressFn = Callable[[str, dict[str, float]], None]
INITS = ("inherit", "reinit")
VALIDATION_SAMPLES = 256  # samples compared between the proxy and onnxruntime before writing


@dataclass
class FinetuneResult:
    input: str
    output: str | None
    init: str
    new_head: int | None
    head: str | None  # the classifier projection node (with --new-head or --freeze-backbone)
    freeze_backbone: bool
    train_samples: int
    val_samples: int
    max_steps: int
    steps_run: int
    best_step: int
    stopped_early: bool
    train_loss_first: float
    train_loss_last: float
    val_loss_initial: float | None
    val_loss_best: float | None
    val_accuracy_initial: float | None
    val_accuracy_best: float | None
    trainable_parameters: int
    frozen_parameters: int
    batchnorm_batch_stats: int  # BatchNormalization nodes trained with batch statistics
    max_abs_diff: float
    provider: str
    device: str
    seed: int
    model: onnx.ModelProto | None = field(repr=False, default=None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model")
        return data


def default_output_path(path: str | os.PathLike) -> Path:
    return derived_path(path, ".finetuned")


def _check_options(steps, epochs, lr, batch_size, init, new_head, val_fraction, patience, eval_every) -> None:
    if steps is not None and epochs is not None:
        raise OptionError("epochs", "give {option:steps} or {option:epochs}, not both")
    for name, value, low in (("steps", steps, 0), ("epochs", epochs, 0), ("batch_size", batch_size, 1),
                             ("patience", patience, 1), ("eval_every", eval_every, 1)):
        if value is not None and value < low:
            raise OptionError(name, f"{{option}} {value}: must be at least {low}")
    if not lr > 0:
        raise OptionError("lr", f"{{option}} {lr}: must be positive")
    if init not in INITS:
        raise OptionError("init", f"{{option}} {init}: choose one of {', '.join(INITS)}")
    if new_head is not None and new_head < 2:
        raise OptionError("new_head", f"{{option}} {new_head}: a classifier head needs at least 2 classes")
    if not 0 <= val_fraction < 1:
        raise OptionError("val_fraction", f"{{option}} {val_fraction}: must be in [0, 1)")


def _load_data(data, model: onnx.ModelProto) -> Dataset:
    if data is None:
        raise OptionError("data", "fine-tuning needs labelled data; pass {option} FILE.npz with 'labels' "
                                  "(or 'train_labels')")
    if isinstance(data, Dataset):
        check_dataset(data, model)
        dataset = data
    else:
        dataset = load_dataset(data, model, split="train")
    if dataset.labels is None:
        raise BadInputError(
            f"{dataset.source}: has no labels; fine-tuning needs class labels: add an int array 'labels' "
            "(or 'train_labels') with one class index per sample"
        )
    if dataset.labels.ndim != 1:
        raise BadInputError(f"{dataset.source}: labels must be a 1-D array of class indices, got shape "
                            f"{dataset.labels.shape}")
    return dataset


def _check_label_range(dataset: Dataset, width: int, new_head: int | None) -> None:
    top = int(dataset.labels.max())
    if top < width:
        return
    if new_head is not None:
        raise OptionError("new_head", f"{dataset.source}: label {top} is out of range for {{option}} {new_head}; "
                                      f"use {{option}} {top + 1} or more")
    raise OptionError(
        "new_head",
        f"{dataset.source}: label {top} is out of range for the model's {width} classes; pass {{option}} "
        f"{top + 1} to train a new {top + 1}-class head, or fix the labels"
    )


def stratified_split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset | None, Dataset]:
    """(validation, training): about `fraction` of each class held out, at least one sample in all,
    and every class keeps at least one training sample."""
    if fraction <= 0:
        return None, dataset
    if len(dataset) < 2:
        raise OptionError("val_fraction", f"{dataset.source}: {len(dataset)} sample(s) cannot be split for "
                                          "validation; give more data or {option} 0")
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for label in np.unique(dataset.labels):
        members = rng.permutation(np.flatnonzero(dataset.labels == label))
        take = min(int(round(len(members) * fraction)), len(members) - 1)
        val.append(members[:take])
    held = np.concatenate(val)
    if held.size == 0:
        held = rng.permutation(len(dataset))[:1]
    rest = np.setdiff1d(np.arange(len(dataset)), held)
    return dataset.subset(np.sort(held)), dataset.subset(rng.permutation(rest))


def _count(params) -> int:
    return int(sum(p.numel() for p in params))


def finetune(
    model_or_path: str | os.PathLike | onnx.ModelProto,
    *,
    data: str | os.PathLike | Dataset,
    output: str | os.PathLike | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float = 1e-3,
    batch_size: int = 32,
    init: str = "inherit",
    new_head: int | None = None,
    freeze_backbone: bool = False,
    batchnorm: bool = True,
    val_fraction: float = 0.2,
    patience: int = 5,
    eval_every: int | None = None,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    write: bool = True,
    allow_nonfinite: bool = False,
    progress: ProgressFn | None = None,
) -> FinetuneResult | None:
    """Train a model on labelled `data` (cross-entropy on its first output) and write it.

    `init`: keep the weights ("inherit") or re-initialise them by role ("reinit": retrain the pruned
    architecture from scratch). `new_head=K` replaces the final classifier projection with a fresh
    K-class one; `freeze_backbone` trains only that projection. Without `steps`/`epochs`, 200 steps.
    Validation (`val_fraction` of each class) runs every `eval_every` steps (default: one epoch, at
    least 10 steps); training stops after `patience` evaluations without a lower validation loss and
    the best weights are written. Deterministic for a seed. `batchnorm` (not with `freeze_backbone`)
    trains with BatchNorm re-inserted after each foldable convolution and folds it back
    (`training.batchnorm`): exported graphs have it folded away; with inherited weights the graph's own
    BatchNormalization nodes train on batch statistics too, and all their statistics are re-estimated on
    the data after training. Under torchrun the ranks train on
    shards of a global batch of `batch_size` per rank; rank 0 checks, writes and returns the result, the
    other ranks return None."""
    _check_options(steps, epochs, lr, batch_size, init, new_head, val_fraction, patience, eval_every)
    check_finetune_numbers(steps=steps, epochs=epochs, lr=lr, batch_size=batch_size, new_head=new_head,
                           val_fraction=val_fraction, patience=patience, eval_every=eval_every, seed=seed)
    check_paths_first(model_or_path, output=output, write=write, force=force, suffix=".finetuned", data=data)
    distributed.init(device=device)
    opened = open_source(model_or_path)
    source, model = opened.name, opened.model
    check_loaded_model(model, source, allow_nonfinite=allow_nonfinite)
    out_path = output_path(opened, output, write=write, force=force, suffix=".finetuned")
    dataset = _load_data(data, model)
    sample_shapes = {name: (1, *array.shape[1:]) for name, array in dataset.inputs.items()}
    check_run_memory(model, static_shapes(model, sample_shapes), sample_shapes, batch_size=batch_size,
                     synthetic_samples=0)
    if new_head is not None:
        _check_label_range(dataset, new_head, new_head)
        model = replace_head(model, new_head, seed)
    head = find_head(model) if (freeze_backbone or new_head is not None) else None
    choice = choose_device(device)
    torch.manual_seed(seed)
    proxy = build_proxy(model, source=source, front_ends=True)
    if init == "reinit":
        reinit_weights(proxy, seed)
    proxy.to(choice.torch_device).eval()
    probe = predict(proxy, dataset.subset(np.arange(min(len(dataset), 4))), device=choice.torch_device)
    if not is_class_scores(probe[0]):
        raise BadInputError(
            f"{source}: the first output has shape {tuple(probe[0].shape)}, not class scores [N, classes]; "
            "finetune trains a classifier with cross-entropy on that output"
        )
    _check_label_range(dataset, probe[0].shape[1], new_head)

    val, train = stratified_split(dataset, val_fraction, seed)
    params = trainable_parameters(proxy)
    if freeze_backbone:
        head_keys = {proxy.parameter_key(name) for name in (head.weight, head.bias) if name} - {None}
        params = [p for k, p in proxy.weights.items() if k in head_keys]
    if not params:
        raise BadInputError(f"{source}: the model has no trainable float weights to fine-tune")
    chosen = {id(p) for p in params}
    for p in proxy.weights.values():
        p.requires_grad_(id(p) in chosen)
    batch_stats = set_batchnorm_mode(proxy, "batch_stats") if init == "reinit" and not freeze_backbone else 0
    trainable = _count(params)  # the model's own weights; inserted BatchNorm layers are folded away
    inserted = insert_batchnorm(proxy, train, seed=seed, device=choice.torch_device) \
        if batchnorm and not freeze_backbone else None
    if inserted is not None:
        params = params + inserted.parameters()
        if not batch_stats:  # inherit: the graph's own BatchNorm nodes train as the inserted ones do
            inserted.train_graph_batchnorm(train)
    per_epoch = -(-len(train) // (batch_size * distributed.world_size()))
    max_steps = epochs * per_epoch if epochs is not None else (200 if steps is None else steps)
    config = LoopConfig(steps=max_steps, lr=lr, batch_size=batch_size, patience=patience,
                        eval_every=eval_every or max(per_epoch, 10), seed=seed)
    loop = train_with_early_stopping(proxy, train, val, params, config, device=choice.torch_device,
                                     progress=progress)
    if inserted is not None and loop.steps_run > 0:  # statistics of the weights as trained, not a lagging average
        inserted.recalibrate(train, seed=seed + 1, device=choice.torch_device, training_batch=batch_size)
    set_batchnorm_mode(proxy, "inference")
    proxy.eval()
    if inserted is not None:
        inserted.fold()
    proxy.round_to_stored()

    def check_and_write() -> FinetuneResult:
        """Export, check against onnxruntime, write: rank 0 only under torchrun."""
        written = proxy.to_onnx()
        sample = dataset.subset(np.arange(min(len(dataset), VALIDATION_SAMPLES)))
        expected = predict(proxy, sample, device=choice.torch_device)
        check = check_written(written, sample.inputs, expected, device="cpu", label=str(out_path or "fine-tuned model"),
                              against="the trained proxy")
        save(written, out_path, opened, force=force)
        return FinetuneResult(
            input=opened.name, output=None if out_path is None else str(out_path), init=init, new_head=new_head,
            head=None if head is None else head.node, freeze_backbone=freeze_backbone, train_samples=len(train),
            val_samples=0 if val is None else len(val), max_steps=max_steps, steps_run=loop.steps_run,
            best_step=loop.best_step, stopped_early=loop.stopped_early,
            train_loss_first=loop.train_losses[0] if loop.train_losses else float("nan"),
            train_loss_last=loop.train_losses[-1] if loop.train_losses else float("nan"),
            val_loss_initial=loop.val_loss_initial, val_loss_best=loop.val_loss_best,
            val_accuracy_initial=loop.val_accuracy_initial, val_accuracy_best=loop.val_accuracy_best,
            trainable_parameters=trainable, frozen_parameters=_count(proxy.weights.values()) - trainable,
            batchnorm_batch_stats=batch_stats, max_abs_diff=check.max_abs_diff, provider=check.provider,
            device=choice.torch_device, seed=seed, model=written,
        )

    return distributed.on_main(check_and_write, "checking and writing")
