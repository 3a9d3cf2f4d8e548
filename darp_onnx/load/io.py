"""Loading and saving ONNX files safely.

Loading never changes the file on disk, refuses external-data paths that leave the model's folder and
turns every failure into a one-line `BadInputError` that names the file and says what to do. Saving
writes to a temporary file in the destination folder and renames it into place, so a crash leaves
either the old file or the new one, never half of one; it never overwrites the input model.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import external_data_helper, shape_inference

from darp_onnx.errors import BadInputError, first_line
from darp_onnx.load.order import sort_nodes
from darp_onnx.load.output_shapes import with_onnxruntime_output_shapes
from darp_onnx.load.staging import StagedWrites

MIN_OPSET = 7
# Protobuf cannot serialise a message over 2 GiB; above this we write weights as external data.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000
DEFAULT_DOMAINS = ("", "ai.onnx")


def max_known_opset() -> int:
    return onnx.defs.onnx_opset_version()


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset for the default ONNX domain (1 when it names none, per the spec)."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return 1


def load_model(path: str | os.PathLike, *, infer_shapes: bool = True) -> onnx.ModelProto:
    """Read, check and (optionally) shape-infer an ONNX file; raises BadInputError on any problem."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file; check the path to the ONNX model")
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, not an ONNX file; pass the path of the .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError or ValueError depending on damage
        raise BadInputError(
            f"{path}: not a readable ONNX model (the file is truncated or not ONNX: {first_line(exc)}); "
            "re-export or re-download it"
        ) from None
    _check_structure(model, path)
    _check_opset(model, path)
    model = with_initializers_allowed(model)
    sort_nodes(model.graph)  # onnxruntime runs graphs whose nodes are out of order; so do we
    model = without_empty_output_shapes(with_dynamic_dims(model))
    if infer_shapes:
        # Shape inference runs before external weights are attached: it needs only dims, and this keeps
        # models over 2 GiB out of the protobuf serialiser.
        model = _infer_shapes(model, path)
    _load_external_data(model, path)
    return with_onnxruntime_output_shapes(model) if infer_shapes else model


def _check_structure(model: onnx.ModelProto, path: Path) -> None:
    if not model.HasField("graph") or (len(model.graph.node) == 0 and len(model.graph.output) == 0):
        raise BadInputError(
            f"{path}: holds no ONNX graph (empty, truncated or not an ONNX file); re-export the model"
        )
    initializer_names = {t.name for t in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in initializer_names]
    if not real_inputs:
        raise BadInputError(
            f"{path}: the graph has no inputs, so there is nothing to feed it; re-export it with its "
            "inputs as graph inputs rather than constants"
        )
    if not model.graph.output:
        raise BadInputError(f"{path}: the graph has no outputs; re-export it with its outputs declared")


def with_initializers_allowed(model: onnx.ModelProto) -> onnx.ModelProto:
    """Before IR 4 every initializer had to be a graph input too; OnnxMLTools (IR 3) wrote waifu2x's UpConv7
    without them, onnxruntime runs it, and onnx.checker refused it. Such a model is read as IR 4, which allows
    initializers that are not inputs (nothing else changes). `model` is not modified."""
    inputs = {v.name for v in model.graph.input}
    if model.ir_version >= 4 or all(t.name in inputs for t in model.graph.initializer):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    fixed.ir_version = 4
    return fixed


def _check_opset(model: onnx.ModelProto, path: Path) -> None:
    if not any(entry.domain in DEFAULT_DOMAINS for entry in model.opset_import):
        domains = sorted({entry.domain for entry in model.opset_import})
        raise BadInputError(
            f"{path}: has no ONNX operators, only {', '.join(domains) or 'none'} (a classical model such as "
            "scikit-learn's); darp-onnx prunes neural networks (their Conv, Gemm, MatMul layers): nothing to prune"
        )
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise BadInputError(
            f"{path}: opset {opset} is older than {MIN_OPSET}, the oldest darp-onnx reads; convert it "
            f"with onnx.version_converter.convert_version(model, {MIN_OPSET}) or re-export with a newer opset"
        )
    if opset > max_known_opset():
        raise BadInputError(
            f"{path}: opset {opset} is newer than the installed onnx {onnx.__version__} knows "
            f"(up to {max_known_opset()}); upgrade onnx (pip install -U onnx) or export with "
            f"opset {max_known_opset()} or lower"
        )


def with_dynamic_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """paddle2onnx (and older exporters) declare a dynamic dimension as dim_value -1. onnx's shape inference
    carries that -1 on and computes sizes like 0 from it (a convolution of a [-1, 3, -1, -1] input: [-1, 8,
    0, 0]), which onnxruntime then refuses ("Invalid Target shape product of 0"). Negative dims become
    unknown ones; value_info holding them is dropped (inference recomputes it). `model` is not modified."""
    def negative(value: onnx.ValueInfoProto) -> bool:
        return any(d.HasField("dim_value") and d.dim_value < 0 for d in value.type.tensor_type.shape.dim)

    graph = model.graph
    if not any(negative(v) for v in [*graph.input, *graph.output, *graph.value_info]):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in [*fixed.graph.input, *fixed.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value < 0:
                dim.ClearField("dim_value")
    kept = [v for v in fixed.graph.value_info if not negative(v)]
    del fixed.graph.value_info[:]
    fixed.graph.value_info.extend(kept)
    return fixed


def without_empty_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Tools that strip shape hints for other runtimes (tract) may leave a graph output with an empty shape,
    rank 0, on a tensor of rank 2: onnx's strict inference then refuses the model ("Inferred shape and existing
    shape differ in rank"), onnxruntime merges leniently and runs it. Such output shapes are cleared, and
    inference gives them again (a true scalar's rank 0 too). `model` is not modified."""
    graph = model.graph
    empty = [o.name for o in graph.output
             if o.type.tensor_type.HasField("shape") and not o.type.tensor_type.shape.dim]
    if not empty:
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.output:
        if value.name in empty:
            value.type.tensor_type.ClearField("shape")
    return fixed


def _infer_shapes(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise BadInputError(
            f"{path}: ONNX shape inference failed ({first_line(exc)}); check the model with "
            "onnx.checker.check_model and re-export it"
        ) from None


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    base_dir = path.resolve().parent
    tensors = [
        t for t in external_data_helper._get_all_tensors(model) if external_data_helper.uses_external_data(t)
    ]
    for tensor in tensors:
        info = external_data_helper.ExternalDataInfo(tensor)
        target = (base_dir / info.location).resolve()
        if base_dir not in target.parents:
            raise BadInputError(
                f"{path}: tensor '{tensor.name}' points at external data '{info.location}' outside the "
                "model's folder; refusing to read it (move the data file next to the model)"
            )
        if not target.is_file():
            raise BadInputError(
                f"{path}: external data file '{info.location}' for tensor '{tensor.name}' is missing; "
                "copy it next to the model"
            )
    if tensors:
        try:
            external_data_helper.load_external_data_for_model(model, str(base_dir))
        except Exception as exc:
            raise BadInputError(f"{path}: could not read external data ({first_line(exc)})") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in external_data_helper._get_all_tensors(model))


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    force: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write `model` atomically. Refuses to overwrite an existing file unless `force`, and refuses to
    write over any path in `protect` (the input model) even with `force`. Large models get their
    weights in a `<name>.data` file beside them."""
    with StagedWrites() as stage:
        stage_model(model, path, stage, force=force, protect=protect)
        stage.commit()
    return Path(path)


def stage_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    stage: StagedWrites,
    *,
    force: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write `model` under a temporary name beside `path`; `stage.commit()` puts it in place (with its
    `.data` file for large models). Same refusals as `save_model`."""
    path = Path(path)
    for guarded in protect:
        if same_file(path, guarded):
            raise BadInputError(
                f"{path}: is the input model; darp-onnx never overwrites its input, choose another output path"
            )
    if path.exists() and not force:
        raise BadInputError(f"{path}: already exists; pass --force to overwrite it or choose another path")
    if path.exists() and path.is_dir():
        raise BadInputError(f"{path}: is a folder; give a file path for the output model")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BadInputError(f"{path}: folder {parent} does not exist; create it first")
    tmp_model = stage.file(path)
    if _weight_bytes(model) <= EXTERNAL_DATA_THRESHOLD_BYTES:
        onnx.save_model(model, str(tmp_model))
        return path
    data_name = f"{path.name}.data"
    tmp_data = stage.file(parent / data_name)
    to_write = onnx.ModelProto()
    to_write.CopyFrom(model)
    external_data_helper.convert_model_to_external_data(
        to_write, all_tensors_to_one_file=True, location=tmp_data.name, size_threshold=1024
    )
    onnx.save_model(to_write, str(tmp_model))
    # The proto names the data file; rewrite it to the final name before the rename.
    written = onnx.load(str(tmp_model), load_external_data=False)
    for tensor in external_data_helper._get_all_tensors(written):
        if external_data_helper.uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
    onnx.save_model(written, str(tmp_model))
    return path
