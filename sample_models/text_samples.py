"""The text encoder sample: train on the sentiment data, export with both torch exporters, verify.

One trained model, two files: ``textenc.onnx`` (dynamo exporter, opset 18) and ``textenc_ts.onnx``
(TorchScript exporter, opset 17), both with dynamic batch ``N`` and sequence ``S`` axes.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from sample_models import text_data
from sample_models.sample_io import save_sample, train_one_cycle

TRAINING = dict(epochs=12, opt="adamw", lr=1e-3, wd=0.05, batch=64, dropout=0.1)
INPUT_NAMES, OUTPUT_NAME = list(text_data.INPUTS), "logits"
EXPORTERS = {"textenc": "dynamo", "textenc_ts": "torchscript"}
ATOL = 1e-4


def feeds(ds: dict, split: str, rows: slice = slice(None)) -> dict[str, np.ndarray]:
    return {name: ds[f"{split}_{name}"][rows] for name in INPUT_NAMES}


def train(model: torch.nn.Module, ds: dict, seed: int) -> float:
    """Train on the train split with a one-cycle schedule; returns the wall time in seconds."""
    cfg = TRAINING
    gen = torch.Generator().manual_seed(seed)
    ids, mask = (torch.from_numpy(ds[f"train_{n}"]) for n in INPUT_NAMES)
    labels = torch.from_numpy(ds["train_labels"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    return train_one_cycle(model, opt, epochs=cfg["epochs"], rows=len(ids), batch=cfg["batch"], pct_start=0.1,
                           gen=gen, loss_of=lambda idx: F.cross_entropy(model(ids[idx], mask[idx]), labels[idx]))


@torch.no_grad()
def torch_logits(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return model(*(torch.from_numpy(inputs[n]) for n in INPUT_NAMES)).numpy()


def _example(ds: dict) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(v) for v in feeds(ds, "train", slice(0, 2)).values())


def export(model: torch.nn.Module, path: Path, exporter: str, ds: dict) -> tuple[str, int]:
    """Export with dynamic batch and sequence axes; returns (exporter description, opset)."""
    example = _example(ds)
    if exporter == "dynamo":
        batch, seq = torch.export.Dim("N"), torch.export.Dim("S", min=2, max=model.positions.num_embeddings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, example, dynamo=True, opset_version=18, input_names=INPUT_NAMES, output_names=[OUTPUT_NAME],
                dynamic_shapes={n: {0: batch, 1: seq} for n in ("input_ids", "attention_mask")},
                external_data=False, verbose=False,
            )  # fmt: skip
        proto, opset, name = program.model_proto, 18, "torch.onnx.export(dynamo=True)"
    else:
        axes = {n: {0: "N", 1: "S"} for n in INPUT_NAMES} | {OUTPUT_NAME: {0: "N"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(path), dynamo=False, opset_version=17, input_names=INPUT_NAMES,
                              output_names=[OUTPUT_NAME], dynamic_axes=axes)
        proto, opset, name = onnx.load(str(path)), 17, "torch.onnx.export(dynamo=False)"
    for value in proto.graph.input:  # the same axis names from both exporters
        value.type.tensor_type.shape.dim[0].dim_param, value.type.tensor_type.shape.dim[1].dim_param = "N", "S"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    save_sample(proto, path)
    return name, opset


def verify(path: Path, model: torch.nn.Module, ds: dict) -> dict:
    """Checker, onnxruntime vs torch at batch 1/7/all and a shorter sequence, test accuracy."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == INPUT_NAMES, sess.get_inputs()
    test = feeds(ds, "test")
    short = {k: v[:5, :20] for k, v in test.items()}
    max_diff = 0.0
    for batch in (feeds(ds, "test", slice(0, 1)), feeds(ds, "test", slice(1, 8)), short, test):
        got = sess.run([OUTPUT_NAME], batch)[0]
        max_diff = max(max_diff, float(np.abs(got - torch_logits(model, batch)).max()))
    if max_diff > ATOL:
        raise AssertionError(f"{path.name}: onnxruntime differs from torch by {max_diff:.2e} > {ATOL}")
    logits = sess.run([OUTPUT_NAME], test)[0]
    ops = Counter(n.op_type for n in proto.graph.node)
    return {
        "onnx_test_accuracy": float((logits.argmax(1) == ds["test_labels"]).mean()),
        "max_abs_diff_vs_torch": max_diff,
        "ir_version": proto.ir_version,
        "op_types": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
