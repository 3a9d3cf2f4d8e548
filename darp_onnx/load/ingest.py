"""Ingestion: make what other exporters wrote usable by the analysis, without asking the user for help.

1. Nodes get unique names (`naming`), 2. constants shared between readers are copied per reader (`unshare`),
weights computed from initializers (a Cast of float16 weights) are computed once (`stored_weights`), 3. every
tensor gets a shape: onnx's shape inference (done by `load_model`), then
onnxruntime's symbolic shape inference, then the shapes onnxruntime observes in one run at the given
input shapes (`observed`). Shapes found by the later sources are written into the model's value_info
only where the earlier ones left a tensor without a complete shape; the observed shapes are also kept
as a table (`Ingested.shapes`) for the cost model. A tensor no source resolves is listed in `unknown`:
the analysis freezes what touches it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from darp_onnx.errors import BadInputError, first_line
from darp_onnx.load.constant_islands import fold_constant_islands
from darp_onnx.load.input_shapes import shapes_text
from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.load.io import with_dynamic_dims
from darp_onnx.load.naming import has_unique_names, name_nodes
from darp_onnx.load.observed import batch_axes, observe_tensors
from darp_onnx.load.refusals import refuse_unprunable
from darp_onnx.load.static_dims import fold_static_dim_reads
from darp_onnx.load.stored_weights import fold_stored_weights
from darp_onnx.load.unshare import unshare_constants


@dataclass
class Ingested:
    model: onnx.ModelProto
    shapes: dict[str, tuple[int, ...]]  # observed by onnxruntime at the given input shapes
    renamed: bool = False
    unshared: int = 0
    folded: int = 0  # nodes computing weights from initializers, folded (stored_weights)
    stored_types: dict[str, int] = field(default_factory=dict)  # float16 weights folded to float32, to restore
    shape_sources: dict[str, int] = field(default_factory=dict)  # tensors completed by each source
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _complete(value: onnx.ValueInfoProto) -> bool:
    ttype = value.type.tensor_type
    return (value.type.HasField("tensor_type") and ttype.HasField("shape")
            and all(d.HasField("dim_value") or d.dim_param for d in ttype.shape.dim))


def _tensor_names(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        names.extend(n for n in node.output if n and n not in inits)
    return names


def _known(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    graph = model.graph
    return {v.name: v for v in [*graph.input, *graph.value_info, *graph.output] if _complete(v)}


def _reinferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's shape inference again, for the tensors it left incomplete before constants were folded (a Pad
    whose pads were computed: [?, ?, ?, ?], then a Reshape with 'symbolic dims after the channel axis');
    `model` itself where inference fails."""
    fresh = onnx.ModelProto()
    fresh.CopyFrom(model)
    kept = [v for v in fresh.graph.value_info if _complete(v)]
    del fresh.graph.value_info[:]
    fresh.graph.value_info.extend(kept)
    try:
        return onnx.shape_inference.infer_shapes(fresh, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - the shapes found before folding are kept
        return model


def _symbolic(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxruntime's symbolic shape inference, quiet; None when it fails on this model."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    logger = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    cwd = os.getcwd()
    try:
        # when inference is incomplete it saves 'sym_shape_infer_temp.onnx' into the current folder: run it in
        # a temporary one so nothing is left in the user's folder
        with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
            os.chdir(scratch)
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=False)
    except Exception:  # it raises bare Exceptions on ops it does not know; the observed shapes follow
        return None
    finally:
        os.chdir(cwd)
        logger.setLevel(level)


def _set_shape(model: onnx.ModelProto, name: str, source: onnx.ValueInfoProto | None,
               dims: tuple[int, ...] | None = None, elem_type: int | None = None,
               free_axes: tuple[int, ...] = ()) -> None:
    """`name`'s type from `source`, or the observed `dims` (and `elem_type` where the graph has none: a
    value_info of type 0, as for the copies `unshare_shapes` makes, fails onnxruntime's load). Axes that
    follow the batch (`free_axes`) are left unknown: fixed at the batch observed, they made onnxruntime
    expect that batch from every run. A graph output gets its element type only: its declaration (the
    written model's too) stays as general as the exporter wrote it."""
    graph = model.graph
    output = next((v for v in graph.output if v.name == name), None)
    target = output or next((v for v in graph.value_info if v.name == name), None) or graph.value_info.add()
    target.name = name
    if source is not None:
        target.type.CopyFrom(source.type)
        return
    ttype = target.type.tensor_type
    if ttype.elem_type == onnx.TensorProto.UNDEFINED:
        if elem_type is None:  # no type to give it: no value_info rather than an invalid one
            if output is None:
                graph.value_info.remove(target)
            return
        ttype.elem_type = elem_type
    if output is not None:
        return
    ttype.ClearField("shape")
    ttype.shape.SetInParent()
    for axis, d in enumerate(dims):
        dim = ttype.shape.dim.add()
        if axis not in free_axes:
            dim.dim_value = int(d)


def _onnxruntime_refuses(model: onnx.ModelProto) -> str | None:
    """Why onnxruntime will not load `model`, or None. Checked here, or a bad value_info surfaces only at
    validation, after the whole search, as an error about the user's model."""
    from darp_onnx.runtime.session import make_session

    try:
        make_session(model, "cpu")
    except Exception as exc:
        return first_line(exc)
    return None


def _about_shapes(exc: BaseException) -> bool:
    """onnxruntime refused the sizes (madmom's chroma MLP at 1x1000 where its MatMul takes 1575 went on to 'the
    shape of matmul_2 is unknown; give --input-shape', a GRU at the wrong width to a budget refusal)."""
    text = str(exc).lower()
    return any(word in text for word in ("shape", "dimension", "rank"))


GROUP_BATCHES = (2, 3, 4, 6, 8, 16)  # batches tried where batch 1 fails: models that take samples in groups


def refuse_batch_of_one(model: onnx.ModelProto, exc: BaseException, seed: int, source: str) -> None:
    """A model whose free batch cannot be 1 (MNE's ICLabel reshapes its batch to [4, -1]: each sample comes
    as 4 views) failed later in the plan with 'shape [4, -1] is invalid for input of size 7 ... please report
    it'. Where onnxruntime runs it at a larger batch, name that batch and the --input-shape that gives it."""
    for batch in GROUP_BATCHES:
        try:
            feeds = synthetic_inputs(model, batch=batch, seed=seed)
            observe_tensors(model, feeds, {n: v.shape for n, v in feeds.items()})
        except Exception:  # not at this batch either (or not a batch axis at all)
            continue
        flags = " ".join(f"--input-shape {n}={'x'.join(map(str, v.shape))}" for n, v in feeds.items())
        raise BadInputError(f"{source}: onnxruntime cannot run the model at batch 1 ({first_line(exc)}), but runs "
                            f"it at batch {batch}: its samples come in groups of {batch}; give {flags} (one group "
                            "is then one sample)") from None


def ingest(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None, *,
           seed: int = 0, source: str = "the model") -> Ingested:
    """The model as the analysis needs it (never modifies `model`); see the module docstring. Quantized
    graphs and graphs with control flow are refused (UnsupportedOpError)."""
    refuse_unprunable(model, source)
    renamed = not has_unique_names(model)
    work = name_nodes(model) if renamed else model
    work = with_dynamic_dims(work)  # a ModelProto given directly did not pass load_model
    work, islands = fold_constant_islands(work)  # before unsharing: a folded value read twice is then copied
    if islands:
        work = _reinferred(work)
    work, _ = fold_static_dim_reads(work)
    work, unshared = unshare_constants(work)
    work, folded, stored_types = fold_stored_weights(work)
    sources = {"onnx": 0, "symbolic": 0, "onnxruntime": 0}
    notes: list[str] = []
    known = _known(work)
    wanted = _tensor_names(work)
    sources["onnx"] = sum(1 for n in wanted if n in known)
    missing = [n for n in wanted if n not in known]
    if missing:
        inferred = _symbolic(work)
        if inferred is None:
            notes.append("onnxruntime's symbolic shape inference failed on this model")
        else:
            found = _known(inferred)
            for name in [n for n in missing if n in found]:
                _set_shape(work, name, found[name])
                sources["symbolic"] += 1
            missing = [n for n in missing if n not in found]
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    feeds: dict[str, np.ndarray] = {}
    try:
        feeds = synthetic_inputs(work, batch=1, seed=seed, shapes=input_shapes)
        shapes, types = observe_tensors(work, feeds, dict(input_shapes or {}))
    except Exception as exc:  # any onnxruntime failure: the static shapes are all there is
        if input_shapes and _about_shapes(exc):  # the sizes asked for do not fit: say so now, not a symptom later
            sizes = shapes_text(input_shapes)
            raise BadInputError(f"{source}: onnxruntime cannot run the model at {sizes} ({first_line(exc)}); give "
                                "the sizes the model takes in --input-shape (or --data arrays of that shape)") from None
        if _about_shapes(exc):
            refuse_batch_of_one(work, exc, seed, source)
        notes.append(f"onnxruntime could not run the model at the given input shapes ({first_line(exc)})")
    observed = [n for n in missing if n in shapes]
    following_batch = batch_axes(work, feeds, dict(input_shapes or {}), shapes) if observed else {}
    for name in observed:
        _set_shape(work, name, None, shapes[name], types.get(name), following_batch.get(name, ()))
        sources["onnxruntime"] += 1
    refused = _onnxruntime_refuses(work) if observed else None
    if refused is not None:  # the written shapes contradict onnxruntime's own inference: keep them as a table only
        written = set(observed)
        kept = [v for v in work.graph.value_info if v.name not in written]
        del work.graph.value_info[:]
        work.graph.value_info.extend(kept)
        notes.append(f"shapes observed by onnxruntime kept out of the model's value_info ({refused})")
    unknown = [n for n in missing if n not in shapes]
    return Ingested(model=work, shapes=shapes, renamed=renamed, unshared=unshared, folded=folded,
                    stored_types=stored_types, shape_sources=sources, unknown=unknown, notes=notes)
