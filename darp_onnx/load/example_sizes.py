"""The sizes a model with free input dims is counted and analysed at when none are given: those `prune`
recorded in it, else example sizes (224 for a picture's sides, 64 for a sequence) that onnxruntime runs."""

from __future__ import annotations

import onnx

from darp_onnx.load.input_shapes import recorded_input_shapes
from darp_onnx.load.inputs import example_shape, graph_inputs, synthetic_inputs
from darp_onnx.runtime.session import make_session


def counting_sizes(model: onnx.ModelProto, given: dict[str, tuple[int, ...]]
                   ) -> tuple[dict[str, tuple[int, ...]], str | None]:
    """The sizes to count a model at, and where they came from: those given; else, for inputs with free
    dims after the batch, the sizes `prune` recorded in the model, or example sizes (224 for a picture's
    sides, 64 for a sequence). `inspect` of a PP-OCR model with a free height ended in 'give --input-shape'."""
    free = [v for v in graph_inputs(model) if v.name not in given
            and any(not (d.HasField("dim_value") and d.dim_value > 0) for d in v.type.tensor_type.shape.dim[1:])]
    if not free:
        return given, "--input-shape" if given else None
    recorded = recorded_input_shapes(model)
    if all(v.name in recorded for v in free):
        return {**given, **{v.name: recorded[v.name] for v in free}}, "the sizes the model was pruned at"
    examples = {v.name: tuple(int(d) for d in example_shape(v).split("x")) for v in free}
    return runnable_sizes(model, given, named_alike(model, given, examples)), \
        "example sizes for its free dims (give --input-shape for yours)"


EXAMPLE_SIDES = (224, 256, 320, 384, 512, 192, 160, 128, 448, 640)  # a picture's sides, tried in turn


def runnable_sizes(model: onnx.ModelProto, given: dict[str, tuple[int, ...]], shapes: dict[str, tuple[int, ...]]
                   ) -> dict[str, tuple[int, ...]]:
    """`shapes`, or the first EXAMPLE_SIDES that onnxruntime runs on the example sizes' picture sides (224):
    a MobileViT exported at 256x256 keeps its patch counts as constants, and at 224 its Reshape failed, so
    `inspect` asked for --input-shape. Unchanged where nothing else runs (the error then names the sizes)."""
    sides = [(name, axis) for name, dims in shapes.items() if name not in given
             for axis, size in enumerate(dims) if axis > 0 and size == EXAMPLE_SIDES[0]]
    if not sides:
        return shapes
    try:
        session = make_session(model, "cpu", optimized=False)
    except Exception:  # noqa: BLE001 - ingest reports what onnxruntime says
        return shapes
    for side in EXAMPLE_SIDES:
        trial = {name: tuple(side if (name, axis) in sides else size for axis, size in enumerate(dims))
                 for name, dims in shapes.items()}
        try:
            session.run(None, synthetic_inputs(model, batch=1, seed=0, shapes=trial))
        except Exception:  # noqa: BLE001 - not these sizes
            continue
        return trial
    return shapes


def named_alike(model: onnx.ModelProto, given: dict[str, tuple[int, ...]], examples: dict[str, tuple[int, ...]]
                 ) -> dict[str, tuple[int, ...]]:
    """`given` and `examples`, with every dim the graph names alike (dim_param) at one size: the first the given
    shapes, then the examples in input order, give it. hama's decoder step declares [batch, src_len] beside
    [2, batch, 96]: per-input examples made src_len 64 and 16000, batch 1 and 64, and onnxruntime refused."""
    declared = {v.name: list(v.type.tensor_type.shape.dim) for v in graph_inputs(model)}
    sizes: dict[str, int] = {}
    for shapes in (given, examples):
        for name, dims in shapes.items():
            for dim, size in zip(declared.get(name, []), dims, strict=False):
                if dim.dim_param:
                    sizes.setdefault(dim.dim_param, int(size))
    named = {name: tuple(sizes[d.dim_param] if d.dim_param else size
                         for d, size in zip(declared.get(name, []), dims, strict=False)) or dims
             for name, dims in examples.items()}
    return {**given, **named}
