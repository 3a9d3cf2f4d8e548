"""Checks run before any work: paths, the loaded graph and the memory a run needs.

A mistake in a path (a missing folder, an output that is the input under another name, a read-only
folder) or in the model (NaN weights, an edge nobody produces, an op the proxy cannot run) is reported in
one line before the search starts, not after it. Every check raises `PreflightError` (exit code 1).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from math import prod
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from darp_onnx.errors import PreflightError, first_line
from darp_onnx.load.input_shapes import shapes_text
from darp_onnx.runtime.memory import available_bytes, gib

PathLike = str | os.PathLike
ALLOW_NONFINITE_FLAG = "--allow-nonfinite"


def same_path(a: PathLike, b: PathLike) -> bool:
    """True when `a` and `b` name the same file: through symlinks, `..`, hard links or case folding."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a.resolve())) == os.path.normcase(os.path.abspath(b.resolve()))


def check_readable_file(path: PathLike, what: str, flag: str) -> Path:
    """An existing, readable regular file (`what` names it for the user, `flag` is how they gave it)."""
    path = Path(path)
    if not path.exists():
        raise PreflightError(f"{path}: no such file; check the path to {what} ({flag})")
    if path.is_dir():
        raise PreflightError(f"{path}: is a folder, not {what}; pass the file's path ({flag})")
    if not os.access(path, os.R_OK):
        raise PreflightError(f"{path}: cannot be read (permission denied); check {flag}")
    return path


def check_data_path(path: PathLike, flag: str = "--data") -> Path:
    """An existing file or folder we may read."""
    path = Path(path)
    if not path.exists():
        raise PreflightError(f"{path}: no such data file or folder; check {flag}")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise PreflightError(f"{path}: cannot be read (permission denied); check {flag}")
    return path


def probe_writable(folder: Path, path: Path, flag: str) -> None:
    """Create and delete a file in `folder`: the only test that sees read-only mounts and ACLs too."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".darp-onnx-probe.", dir=folder)
    except OSError as exc:
        raise PreflightError(
            f"{path}: cannot write into {folder} ({exc.strerror or exc}); choose a writable folder for {flag}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_not_inputs(path: Path, protect: Mapping[str, PathLike | None], flag: str) -> None:
    for what, guarded in protect.items():
        if guarded is not None and Path(guarded).exists() and same_path(path, guarded):
            raise PreflightError(
                f"{path}: is the {what} ({guarded}); darp-onnx never overwrites its inputs, choose another {flag}"
            )


def check_output_file(path: PathLike, *, flag: str, force: bool,
                      protect: Mapping[str, PathLike | None] = {}) -> Path:  # noqa: B006 - read only
    """A file we may create (or replace with `force`): its folder exists and is writable, it is no
    folder and none of `protect` (what -> path, e.g. {"input model": MODEL}) under any alias."""
    path = Path(path)
    _check_not_inputs(path, protect, flag)
    if path.is_dir():
        raise PreflightError(f"{path}: is a folder; give a file path for {flag}")
    if path.exists() and not force:
        raise PreflightError(f"{path}: already exists; pass --force to overwrite it or choose another {flag}")
    parent = path.absolute().parent
    if not parent.is_dir():
        missing = parent if not parent.exists() else f"{parent} (a file)"
        raise PreflightError(f"{path}: folder {missing} does not exist; create it first or fix {flag}")
    probe_writable(parent, path, flag)
    return path


def check_output_folder(path: PathLike, *, flag: str, files: Iterable[str] = (),
                        protect: Mapping[str, PathLike | None] = {}) -> Path:  # noqa: B006 - read only
    """A folder we may fill with `files`: an existing writable folder, or a new one in an existing
    writable folder; none of the files it will hold is one of `protect`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PreflightError(f"{path}: is a file; give a folder for {flag}")
    _check_not_inputs(path, protect, flag)
    for name in files:
        _check_not_inputs(path / name, protect, flag)
    folder = path if path.is_dir() else path.absolute().parent
    if not folder.is_dir():
        raise PreflightError(f"{path}: folder {folder} does not exist; create it first or fix {flag}")
    probe_writable(folder, path, flag)
    return path


def check_distinct(paths: Mapping[str, PathLike | None]) -> None:
    """No two outputs (flag -> path) are the same file."""
    given = [(flag, Path(p)) for flag, p in paths.items() if p is not None]
    for i, (flag_a, a) in enumerate(given):
        for flag_b, b in given[i + 1:]:
            if same_path(a, b):
                raise PreflightError(f"{a}: given both as {flag_a} and {flag_b}; choose different paths")


# the loaded model --------------------------------------------------------------------------------------
def _weight_tensors(model: onnx.ModelProto):
    for tensor in model.graph.initializer:
        yield tensor.name or "<unnamed initializer>", tensor
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    yield node.output[0] if node.output else node.name, attr.t


# Inputs that are a layer's learnt parameters: an Inf there is damage. Elsewhere exporters write +-Inf on
# purpose (a -inf floor for Max, attention masks), so only NaN is refused outside these.
LAYER_PARAMETERS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
                    "BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2),
                    "LayerNormalization": (1, 2), "PRelu": (1,)}


def _layer_parameters(model: onnx.ModelProto) -> set[str]:
    return {node.input[i] for node in model.graph.node for i in LAYER_PARAMETERS.get(node.op_type, ())
            if i < len(node.input)}


def check_weights(model: onnx.ModelProto, source: str, *, allow_nonfinite: bool = False) -> None:
    """Every weight decodes to its declared shape, and (unless `allow_nonfinite`) no weight holds NaN
    and no layer parameter holds Inf: they make every output and comparison meaningless. Names the tensor."""
    parameters = _layer_parameters(model)
    for name, tensor in _weight_tensors(model):
        try:
            values = numpy_helper.to_array(tensor)
        except Exception as exc:  # raw data of the wrong length, an unknown data type
            raise PreflightError(f"{source}: weight '{name}' cannot be read ({first_line(exc)}); re-export the "
                                 "model") from None
        if allow_nonfinite or values.dtype.kind not in "fc":
            continue
        bad = int(np.count_nonzero(np.isnan(values))) if name not in parameters else \
            values.size - int(np.count_nonzero(np.isfinite(values)))
        if bad:
            raise PreflightError(
                f"{source}: weight '{name}' holds {bad} NaN/Inf value(s) of {values.size}; fix or re-export the "
                f"model, or pass {ALLOW_NONFINITE_FLAG} to go on anyway"
            )


def check_edges(model: onnx.ModelProto, source: str) -> None:
    """Every node input is a graph input, an initializer or an earlier node's output (top level)."""
    known = {v.name for v in model.graph.input} | {t.name for t in model.graph.initializer} | {""}
    for node in model.graph.node:
        for name in node.input:
            if name not in known:
                raise PreflightError(
                    f"{source}: node '{node.name}' ({node.op_type}) reads '{name}', which no node, input or "
                    "initializer produces (a dangling edge or nodes out of order); re-export the model"
                )
        known.update(node.output)
    missing = [o.name for o in model.graph.output if o.name not in known]
    if missing:
        raise PreflightError(f"{source}: graph output '{missing[0]}' is produced by no node; re-export the model")


def convertible_in(model: onnx.ModelProto):
    """A predicate: the proxy can run this node of `model`, converted, or with onnxruntime as a front end
    (load.front_end)."""
    from darp_onnx.load.front_end import front_end_nodes, has_converter_in

    has_converter = has_converter_in(model)
    front = front_end_nodes(model, has_converter)
    return lambda node: has_converter(node) or (bool(node.output) and node.output[0] in front)


def check_convertible(model: onnx.ModelProto, source: str, why: str | None = None) -> None:
    """Every node has a proxy converter (checked up front: the search cannot run a graph it cannot convert);
    `why` the network before such a node cannot be pruned alone (load.post_processing), where that was tried."""
    from darp_onnx.load.io import default_opset
    from darp_onnx.load.post_processing import node_label

    convertible = convertible_in(model)
    for index, node in enumerate(model.graph.node):
        if not convertible(node):
            op = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else \
                f"{node.op_type} (opset {default_opset(model)})"
            raise PreflightError(
                f"{source}: node {node_label(node, index)} uses op {op}, which darp-onnx cannot run in its proxy"
                + (f" ({why})" if why else "") + "; `darp-onnx inspect` marks which of its ops are supported "
                "(replace the op or export without it)"
            )


# memory -------------------------------------------------------------------------------------------------
def check_memory(needed: int, what: str, advice: str, *, available: int | None = None) -> None:
    """Refuse a run that would need more than the free memory (the OOM killer gives no message)."""
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise PreflightError(f"{what} needs about {gib(needed)} of memory, {gib(available)} is free; {advice}")


def synthetic_data_bytes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], samples: int) -> int:
    """Peak bytes while drawing `samples` synthetic samples (drawn in float64, then cast)."""
    from darp_onnx.load.inputs import graph_inputs, input_shape

    total = 0
    for value in graph_inputs(model):
        per_sample = prod(input_shape(value, 1, shapes)[1:]) if len(value.type.tensor_type.shape.dim) else 1
        total += per_sample * samples * (8 + 4)
    return total


def activation_bytes(tensor_shapes: Mapping[str, tuple[int, ...]], weights: Iterable[str], batch: int) -> int:
    """Bytes of every float32 activation (not weights) of one forward pass of `batch` samples: what a
    backward pass keeps."""
    weights = set(weights)
    per_sample = sum(prod(s) for name, s in tensor_shapes.items() if name not in weights)
    return int(per_sample) * 4 * batch


# bundles the workflows call ----------------------------------------------------------------------------
REPORT_FILE_NAMES = ("report.json", "report.md", "report.html")


def check_run_paths(*, model: PathLike | None, output: PathLike | None, force: bool,
                    report: PathLike | None = None, data: PathLike | None = None) -> None:
    """The model (and data) can be read; the output file and the report folder can be written and are
    none of the inputs, under any alias."""
    if model is not None:
        check_readable_file(model, "the ONNX model", "MODEL")
    if data is not None:
        check_data_path(data)
    protect = {"input model": model, "data": data}
    if output is not None:
        check_output_file(output, flag="-o/--output", force=force, protect=protect)
    if report is not None:
        check_output_folder(report, flag="--report", files=REPORT_FILE_NAMES,
                            protect={**protect, "output model": output})
        check_distinct({"-o/--output": output, "--report": report})


def check_loaded_model(model: onnx.ModelProto, source: str, *, allow_nonfinite: bool = False,
                       unconvertible_why: str | None = None) -> None:
    """What must hold before the model is analysed or run: edges connect, every op converts, weights
    are finite (unless allowed)."""
    check_edges(model, source)
    check_convertible(model, source, unconvertible_why)
    check_weights(model, source, allow_nonfinite=allow_nonfinite)
    check_spec(model, source)


PROTOBUF_LIMIT = 2**31 - 1


def check_spec(model: onnx.ModelProto, source: str) -> None:
    """onnx.checker's full check (schemas, arity, attributes, types, strict shape inference): a graph
    onnxruntime would refuse is reported here, naming the node (skipped over 2 GiB, which the checker
    cannot take in memory)."""
    if model.ByteSize() > PROTOBUF_LIMIT:
        return
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise PreflightError(f"{source}: breaks the ONNX spec ({first_line(exc)}); fix or re-export the model") \
            from None


def check_run_memory(model: onnx.ModelProto, tensor_shapes: Mapping[str, tuple[int, ...]],
                     input_shapes: Mapping[str, tuple[int, ...]], *, batch_size: int, synthetic_samples: int) -> None:
    """The synthetic data and one training batch fit in free memory."""
    data = synthetic_data_bytes(model, input_shapes, synthetic_samples) if synthetic_samples else 0
    weights = {t.name for t in model.graph.initializer}
    batch = activation_bytes(tensor_shapes, weights, batch_size)
    if data + batch:
        sizes = shapes_text(input_shapes) or "the declared shapes"
        check_memory(data + batch, f"a batch of {batch_size} at {sizes} ({gib(batch)})"
                     + (f" and {synthetic_samples} synthetic samples ({gib(data)})" if data else ""),
                     "lower --batch-size or the sizes in --input-shape")


def check_report_files(paths: Mapping[str, PathLike | None]) -> None:
    """Report files (flag -> path) that may be overwritten: their folders exist and are writable, none is
    a folder and no two are the same."""
    for flag, path in paths.items():
        if path is not None:
            check_output_file(path, flag=flag, force=True)
    check_distinct(paths)


def write_texts(texts: Mapping[PathLike | None, str]) -> None:
    """Write each text (UTF-8) to its path, all or none (None paths are skipped)."""
    from darp_onnx.load.staging import StagedWrites

    with StagedWrites() as stage:
        for path, text in texts.items():
            if path is not None:
                with open(stage.file(path), "w", encoding="utf-8", newline="\n") as handle:
                    handle.write(text)
        stage.commit()
