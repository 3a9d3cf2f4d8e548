"""Memory: peak resident size, what the machine can still give, and the batch that fits a limit.

Training memory is estimated before anything large is allocated, so a model that cannot fit is refused
with a message instead of being killed by the kernel: weights with their gradients and Adam moments,
plus per sample the float activations of one forward pass (every tensor's size from shape inference)
times ACTIVATION_FACTOR (kept for the backward pass, their gradients, and the gated copies).
"""

from __future__ import annotations

import os
import re
import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx

from darp_onnx.errors import BadInputError

MEMORY_FLAG = "--max-memory"
SAFE_SHARE = 0.7  # default limit: this share of the memory available when the run starts
# Training bytes per forward-activation byte: measured 0.7 (resnet) to 1.25 (mobilenetv3, yolov8) on the sample
# CNNs at 224x224, batch 8 and 16 (peak RSS growth of two gated forward/backward steps); with a margin.
ACTIVATION_FACTOR = 1.5
WEIGHT_FACTOR = 4.0  # weights, gradients, two Adam moments
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30,
          "t": 2**40, "tb": 2**40}


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit still allows, if one is set."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_bytes() -> int:
    """Memory the system can give without swapping: MemAvailable, bounded by a cgroup limit."""
    available = None
    try:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        available = int(match.group(1)) * 1024 if match else None
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def parse_memory(text: str | float | int | None) -> int | None:
    """'8G', '512M', '2.5GB' or a byte count -> bytes; None or 'auto' -> None (the default limit)."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "auto")):
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise BadInputError(f"{MEMORY_FLAG} {text!r}: give a size such as 8G, 512M or 'auto'")
    return int(float(match.group(1)) * _UNITS[unit])


def default_limit() -> int:
    return int(SAFE_SHARE * available_bytes())


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def activation_bytes_per_sample(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Bytes of every float tensor of one forward pass at batch 1 (float32)."""
    from darp_onnx.load.shapes import static_shapes

    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.BFLOAT16}
    initializers = {t.name for t in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    total = 0
    for name, shape in static_shapes(model, input_shapes, batch=1).items():
        if name in initializers or types.get(name, onnx.TensorProto.FLOAT) not in float_types:
            continue
        count = 1
        for dim in shape:
            count *= max(int(dim), 1)
        total += 4 * count
    return total


@dataclass(frozen=True)
class MemoryPlan:
    limit: int  # bytes the run may use
    fixed: int  # weights, optimiser state, data, what the process holds already
    per_sample: int  # training bytes per sample of a batch
    max_batch: int

    def describe(self) -> dict[str, float]:
        return {"limit_gib": round(self.limit / 2**30, 3), "per_sample_mib": round(self.per_sample / 2**20, 2),
                "max_batch": self.max_batch}


def plan_memory(*, limit: int | None, weight_bytes: int, activation_bytes: int, data_bytes: int,
                current: int | None = None) -> MemoryPlan:
    """The largest batch whose estimated training memory stays under `limit` (default: a safe share of the
    available memory plus what the process holds); BadInputError when not even one sample fits."""
    current = peak_rss_bytes() if current is None else current
    explicit = limit is not None
    limit = limit if explicit else default_limit() + current
    fixed = current + int(WEIGHT_FACTOR * weight_bytes) + data_bytes
    per_sample = max(int(ACTIVATION_FACTOR * activation_bytes), 1)
    max_batch = (limit - fixed) // per_sample
    if max_batch < 1:
        where = f"{MEMORY_FLAG} {gib(limit)}" if explicit else f"{gib(limit)} ({SAFE_SHARE:.0%} of free memory)"
        raise BadInputError(
            f"the search needs about {gib(fixed + per_sample)} at batch 1 ({gib(per_sample)} per sample), more than "
            f"{where}; free memory, raise {MEMORY_FLAG}, or prune at a smaller --input-shape")
    return MemoryPlan(limit, fixed, per_sample, int(max_batch))
