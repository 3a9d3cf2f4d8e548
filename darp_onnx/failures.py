"""No traceback ever: an unexpected exception inside a stage becomes a `StageError` (a `DarpError`,
exit 1) that names the stage, the node being handled (name, op type) when known, and what to do.
The original exception stays chained (`__cause__`), so `--debug` still shows where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import onnx

from darp_onnx.errors import BadInputError, DarpError, first_line

NODE_ATTRIBUTE = "darp_onnx_node"  # (name, op_type) set on an exception by `at_node`

ADVICE = {
    "ingest": "check the model with onnx.checker and onnxruntime, or give --input-shape for every input",
    "analysis": "run `darp-onnx inspect` on the model to see its channel groups",
    "shapes": "give --input-shape for every input",
    "proxy": "run `darp-onnx check` on the model; the op may need a converter",
    "plan": "check that the --data arrays fit the model's inputs (samples first; for a model without a batch "
            "axis, whole feeds stacked along a first axis) or give --input-shape",
    "reference_outputs": "check that the --data arrays fit the model's inputs (samples first; for a model without "
                         "a batch axis, whole feeds stacked along a first axis)",
    "search": "try --method l1 (no search) or fewer --steps",
    "extraction": "try another budget",
    "finetune": "try --finetune-steps 0",
    "rewrite": "try --keep-branches or another budget",
    "validation": "nothing was written; try --keep-branches or another budget",
}


class StageError(BadInputError):
    """An unexpected failure inside a named stage, reported as one line."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        node = getattr(exc, NODE_ATTRIBUTE, None)
        self.node = node
        where = f" at node '{node[0]}' ({node[1]})" if node else ""
        advice = f"{ADVICE[stage]} " if stage in ADVICE else ""
        super().__init__(f"{stage} failed{where}: {type(exc).__name__}: {first_line(exc)}; {advice}"
                         "(--debug shows the traceback; please report it)")


@contextmanager
def in_stage(name: str) -> Iterator[None]:
    """Turn any non-DarpError raised inside into a StageError naming stage `name`."""
    try:
        yield
    except DarpError as exc:
        if getattr(exc, "stage", None) is None:
            exc.stage = name
        raise
    except Exception as exc:
        raise StageError(name, exc) from exc


def mark_node(exc: BaseException, name: str, op_type: str) -> None:
    """Record on `exc` the node it came from, unless an inner handler already did."""
    if getattr(exc, NODE_ATTRIBUTE, None) is None:
        setattr(exc, NODE_ATTRIBUTE, (name, op_type))


@contextmanager
def at_node(node: onnx.NodeProto) -> Iterator[None]:
    """Remember which node was being handled when something below fails (the innermost node wins)."""
    try:
        yield
    except DarpError:
        raise
    except Exception as exc:
        mark_node(exc, node.name or f"#{node.output[0] if node.output else '?'}", node.op_type)
        raise
