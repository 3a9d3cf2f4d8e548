"""`--input-shape` values: parsing `NAME=1x3x32x32` and checking them against a model's inputs."""

from __future__ import annotations

import json
import re

import onnx

from darp_onnx.errors import BadInputError
from darp_onnx.load.inputs import graph_inputs

INPUT_SHAPE_FLAG = "--input-shape"
_DIMS = re.compile(r"^\d+([x,]\d+)*$")


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`NAME=1x3x32x32` -> {NAME: (1, 3, 32, 32)}; a bare `1x3x32x32` goes under "" ('the single
    input'). Commas may stand for 'x'. Raises BadInputError naming the flag on bad syntax."""
    shapes: dict[str, tuple[int, ...]] = {}
    for raw in values or []:
        text = raw.strip()
        name, sep, dims_text = text.rpartition("=")
        name = name.strip() if sep else ""
        if sep and not name:
            raise BadInputError(f"{INPUT_SHAPE_FLAG} '{raw}': the input name before '=' is empty; "
                                "write NAME=1x3x32x32")
        dims_text = dims_text.strip().lower().replace(" ", "")
        if not _DIMS.match(dims_text):
            raise BadInputError(
                f"{INPUT_SHAPE_FLAG} '{raw}': expected NAME=1x3x32x32 or 1x3x32x32 (positive integer dims "
                "joined by 'x')"
            )
        dims = tuple(int(d) for d in re.split("[x,]", dims_text))
        if any(d <= 0 for d in dims):
            raise BadInputError(f"{INPUT_SHAPE_FLAG} '{raw}': every dim must be at least 1")
        if name in shapes:
            what = f"input '{name}'" if name else "the single input (no NAME=)"
            raise BadInputError(f"{INPUT_SHAPE_FLAG} given twice for {what}; give each input once")
        shapes[name] = dims
    return shapes


def resolve_input_shapes(
    model: onnx.ModelProto, parsed: dict[str, tuple[int, ...]], *, what: str = "the model",
    check_fixed: bool = False,
) -> dict[str, tuple[int, ...]]:
    """Check `parsed` against the model's inputs: "" becomes the name of its only input, unknown names
    and rank mismatches are BadInputErrors listing the inputs. With `check_fixed` (runs that feed the
    model) a dim that differs from one the model fixes is one too; without it (counting MACs at another
    size) fixed dims may be overridden."""
    inputs = {value.name: value for value in graph_inputs(model)}
    names = ", ".join(f"'{n}'" for n in inputs) or "none"
    resolved: dict[str, tuple[int, ...]] = {}
    for name, dims in parsed.items():
        if name == "":
            if len(inputs) != 1:
                raise BadInputError(
                    f"{INPUT_SHAPE_FLAG} without a name needs a model with one input, but {what} has "
                    f"{len(inputs)} ({names}); write NAME=1x3x32x32"
                )
            name = next(iter(inputs))
            if name in parsed:
                raise BadInputError(f"{INPUT_SHAPE_FLAG} given twice for input '{name}'; give it once")
        if name not in inputs:
            raise BadInputError(f"{INPUT_SHAPE_FLAG}: {what} has no input '{name}'; its inputs are {names}")
        ttype = inputs[name].type.tensor_type
        if ttype.HasField("shape") and len(ttype.shape.dim) != len(dims):
            raise BadInputError(
                f"{INPUT_SHAPE_FLAG} {name}={'x'.join(map(str, dims))}: input '{name}' of {what} has "
                f"{len(ttype.shape.dim)} dims, not {len(dims)}"
            )
        if ttype.HasField("shape") and check_fixed:
            check_fixed_dims(name, dims, ttype.shape.dim, what)
        resolved[name] = dims
    return {**resolved, **shared_dims(inputs, resolved)}


def shared_dims(inputs: dict[str, onnx.ValueInfoProto], given: dict[str, tuple[int, ...]]
                ) -> dict[str, tuple[int, ...]]:
    """Shapes for inputs not given whose free dims other inputs' given shapes name: input_ids=1x64 sets
    'batch' and 'sequence' for attention_mask and token_type_ids too (a user was asked for them one by one);
    element=32 sets 'num_atoms' for a graph network's positions [num_atoms, 3] (a first axis is not always
    a batch)."""
    sizes: dict[str, int] = {}
    for name, dims in given.items():
        declared = inputs[name].type.tensor_type.shape.dim
        for dim, size in zip(declared, dims, strict=False):
            if dim.dim_param:
                sizes.setdefault(dim.dim_param, int(size))
    found = {}
    for name, value in inputs.items():
        declared = value.type.tensor_type.shape.dim
        free = [d for d in declared if not (d.HasField("dim_value") and d.dim_value > 0)]
        if name in given or not free:
            continue
        if all(d.dim_param in sizes for d in free):
            found[name] = tuple(int(d.dim_value) if _fixed(d) else sizes[d.dim_param] for d in declared)
    return found


def _fixed(dim) -> bool:
    return dim.HasField("dim_value") and dim.dim_value > 0


def check_fixed_dims(name: str, dims: tuple[int, ...], declared, what: str) -> None:
    """A given shape may set symbolic dims only: a dim the model fixes must be given as it is."""
    for axis, (given, dim) in enumerate(zip(dims, declared, strict=True)):
        if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != given:
            fixed = "x".join(str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else
                             (d.dim_param or "?") for d in declared)
            raise BadInputError(
                f"{INPUT_SHAPE_FLAG} {name}={'x'.join(map(str, dims))}: axis {axis} of input '{name}' is fixed "
                f"at {dim.dim_value} in {what} (declared {fixed}); only symbolic dims can be set"
            )


def name_output_dims(model: onnx.ModelProto, given: dict[str, onnx.ValueInfoProto]) -> None:
    """The graph outputs' free dims named as in the model given (changed in place): shape inference renamed a
    BERT's ['batch', 'sequence', 256] to ['unk__56', 'unk__57', 256], and code that binds outputs by the
    names optimum declared lost the link between the output's batch and the input's."""
    for output in model.graph.output:
        source = given.get(output.name)
        if source is None:
            continue
        dims, names = output.type.tensor_type.shape.dim, source.type.tensor_type.shape.dim
        if len(dims) != len(names):
            continue
        for dim, name in zip(dims, names, strict=True):
            if name.dim_param and not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.dim_param = name.dim_param


RECORDED_SHAPES_KEY = "darp_onnx.input_shapes"  # metadata of a written model: the sizes it was pruned at


def record_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    """Write the input sizes a model was pruned at into its metadata, so `validate` and `inspect` run it at
    them when no --input-shape is given (a PP-OCR recogniser with a free height ended in 'give
    --input-shape' in `validate` after `prune` had been told the sizes)."""
    kept = [p for p in model.metadata_props if p.key != RECORDED_SHAPES_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if shapes:
        entry = model.metadata_props.add()
        entry.key, entry.value = RECORDED_SHAPES_KEY, json.dumps({n: list(map(int, s)) for n, s in shapes.items()})


def recorded_input_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The sizes `record_input_shapes` wrote, for inputs the model has at those ranks ({} if none)."""
    text = next((p.value for p in model.metadata_props if p.key == RECORDED_SHAPES_KEY), None)
    try:
        recorded = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(recorded, dict):
        return {}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph_inputs(model)}
    return {name: tuple(dims) for name, dims in recorded.items()
            if isinstance(dims, list) and ranks.get(name) == len(dims)
            and all(isinstance(d, int) and d > 0 for d in dims)}


def shapes_text(shapes: dict[str, tuple[int, ...]]) -> str:
    """{'x': (1, 3, 48, 320)} -> 'x=1x3x48x320' (as --input-shape takes them)."""
    return ", ".join(f"{name}={'x'.join(map(str, dims))}" for name, dims in shapes.items())
