"""`--input-shape` values: parsing `NAME=1x3x32x32` and checking them against a model's inputs."""

from __future__ import annotations

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
    return resolved


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
