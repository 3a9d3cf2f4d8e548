"""Runs the ONNX project's backend node test cases through the proxy and classifies each outcome.

The installed onnx package builds the cases in memory (`load_model_tests(kind="node")`). A case is
*claimed* when the registry has a converter for every node at the model's opset; a claimed case must
compute the expected outputs or be refused with our own error (a `DarpError`), an unclaimed one must
be refused. Each case runs in two forms: every input fed at run time ("inputs"), and every input after
the first turned into an initializer, as exporters store weights ("initializers").
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx.backend.test.case.test_case import TestCase

from darp_onnx.errors import DarpError, first_line
from darp_onnx.load.io import default_opset
from darp_onnx.proxy import build_proxy
from darp_onnx.proxy.registry import get_converter, normalise_domain

MODES = ("inputs", "initializers")
RTOL, ATOL = 1e-3, 1e-5
HALF_ULPS = 2  # half and narrower float types: proxy outputs rounded to the type may differ by 2 ulps
_NARROW_FLOATS = {
    np.dtype(np.float16),
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e4m3fnuz),
    np.dtype(ml_dtypes.float8_e5m2),
    np.dtype(ml_dtypes.float8_e5m2fnuz),
}

_NARROW_INTS = {"int4": np.int8, "int2": np.int8, "uint4": np.uint8, "uint2": np.uint8}

PASS, REFUSED, MISMATCH, CRASH = "pass", "refused", "mismatch", "crash"
PASS_ORT = "pass-onnxruntime"  # equals onnxruntime on a case where onnxruntime differs from the reference

# Cases where onnxruntime (which the proxy must equal: pruned models are validated on it) computes
# something other than the ONNX reference. The proxy follows onnxruntime there; the test checks both
# that it does and that the reference still differs, so the entry goes stale loudly.
RUNTIME_DIFFERENCES = {
    "test_resize_downsample_scales_linear_align_corners": "align_corners with scales: onnxruntime divides by "
    "the integer output length - 1, the reference by in_len * scale - 1",
    "test_resize_downsample_scales_cubic_align_corners": "align_corners with scales: onnxruntime divides by "
    "the integer output length - 1, the reference by in_len * scale - 1",
}


@dataclass(frozen=True)
class Outcome:
    status: str  # PASS, REFUSED, MISMATCH or CRASH
    detail: str = ""


@functools.cache
def node_cases() -> dict[str, TestCase]:
    """Every node case the installed onnx builds, by name (built once per process: ~4 s)."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    return {case.name: case for case in cases}


def is_claimed(model: onnx.ModelProto) -> bool:
    """Whether the registry has a converter for every node of the main graph at the model's opset."""
    opset = default_opset(model)
    for node in model.graph.node:
        if node.op_type == "Constant" and normalise_domain(node.domain) == "":
            continue
        if normalise_domain(node.domain) or get_converter(node.op_type, opset) is None:
            return False
    return True


def with_initializers(model: onnx.ModelProto, feeds: list) -> tuple[onnx.ModelProto, list]:
    """The model with every graph input after the first stored as an initializer holding `feeds`' value."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    moved = list(out.graph.input)[1:]
    for info, value in zip(moved, feeds[1:], strict=False):
        if not isinstance(value, np.ndarray):
            return model, feeds  # sequences and optionals have no initializer form: keep them as inputs
        tensor = numpy_helper.from_array(value, info.name)
        tensor.data_type = info.type.tensor_type.elem_type or tensor.data_type
        out.graph.initializer.append(tensor)
    del out.graph.input[1:]
    return out, feeds[:1]


def run_case(case: TestCase, mode: str) -> Outcome:
    """Build the proxy of the case's model, run every data set and compare with the expected outputs
    (with onnxruntime's outputs for the cases in RUNTIME_DIFFERENCES, which must differ from them)."""
    for raw_feeds, raw_expected in case.data_sets:
        feeds, expected = [_as_value(v) for v in raw_feeds], [_as_value(v) for v in raw_expected]
        if case.name in RUNTIME_DIFFERENCES:
            expected = _onnxruntime_outputs(case, feeds, expected)
            if isinstance(expected, Outcome):
                return expected
        model, inputs = (case.model, feeds) if mode == "inputs" else with_initializers(case.model, list(feeds))
        outcome = _run_once(model, inputs, expected, case)
        if outcome.status != PASS:
            return outcome
    return Outcome(PASS_ORT if case.name in RUNTIME_DIFFERENCES else PASS)


def _onnxruntime_outputs(case: TestCase, feeds: list, reference: list) -> list | Outcome:
    import onnxruntime as ort

    session = ort.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {i.name: v for i, v in zip(session.get_inputs(), feeds, strict=True)})
    if all(not compare(torch.from_numpy(o), r, rtol=RTOL, atol=ATOL) for o, r in zip(outputs, reference,
                                                                                      strict=True)):
        return Outcome(MISMATCH, "listed in RUNTIME_DIFFERENCES but onnxruntime now equals the reference")
    return outputs


def _as_value(value):
    """Case data as numpy: some cases store TensorProtos, some numpy scalars; sequences stay lists."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


def _run_once(model: onnx.ModelProto, feeds: list, expected: list, case: TestCase) -> Outcome:
    try:
        proxy = build_proxy(model, source=case.name)
        names = proxy.input_names
        with torch.no_grad():
            outputs = proxy.run(dict(zip(names, feeds, strict=False)))
        actual = [outputs[name] for name in proxy.output_names]
    except DarpError as exc:
        return Outcome(REFUSED, first_line(exc))
    except Exception as exc:  # noqa: BLE001 - a crash is an outcome we report, not one we hide
        return Outcome(CRASH, f"{type(exc).__name__}: {first_line(exc)}")
    if len(actual) != len(expected):
        return Outcome(MISMATCH, f"{len(actual)} outputs, expected {len(expected)}")
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        problem = compare(a, e, rtol=max(RTOL, case.rtol), atol=max(ATOL, case.atol))
        if problem:
            return Outcome(MISMATCH, f"output {index}: {problem}")
    return Outcome(PASS)


def to_numpy(value: torch.Tensor) -> np.ndarray:
    value = value.detach().cpu()
    if value.dtype.is_floating_point and value.dtype not in (torch.float16, torch.float32, torch.float64):
        value = value.float()  # bfloat16 and float8 have no numpy dtype in torch
    return value.numpy()


def compare(actual: torch.Tensor, expected: np.ndarray, *, rtol: float, atol: float) -> str:
    """'' when `actual` matches `expected`, else what differs. Floats within tolerance (narrow floats
    within HALF_ULPS units in the last place of their type), integers and booleans exactly."""
    if not isinstance(expected, np.ndarray) or not isinstance(actual, torch.Tensor):
        return f"got {type(actual).__name__}, expected {type(expected).__name__}"
    got = to_numpy(actual)
    if got.shape != expected.shape:
        return f"shape {got.shape} != expected {expected.shape}"
    if expected.dtype in _NARROW_FLOATS:
        return _compare_narrow(got, expected)
    if expected.dtype.name in _NARROW_INTS:  # 4- and 2-bit integers come out of the proxy in 8 bits
        expected = expected.astype(_NARROW_INTS[expected.dtype.name])
    if expected.dtype.kind != got.dtype.kind:
        return f"dtype {got.dtype} != expected {expected.dtype}"
    if expected.dtype.kind in "fc":
        close = np.isclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol,
                           equal_nan=True)
        return "" if close.all() else _describe(~close, got, expected)
    same = got == expected
    return "" if np.all(same) else _describe(~same, got, expected)


def _compare_narrow(got: np.ndarray, expected: np.ndarray) -> str:
    if got.dtype.kind != "f":
        return f"dtype {got.dtype} != expected {expected.dtype}"
    with np.errstate(all="ignore"):
        rounded = got.astype(np.float32).astype(expected.dtype)
    ulps = np.abs(_ordered_bits(rounded) - _ordered_bits(expected))
    exp32 = expected.astype(np.float32)
    nan_ok = np.isnan(exp32) == np.isnan(rounded.astype(np.float32))
    bad = ~nan_ok | (~np.isnan(exp32) & (ulps > HALF_ULPS))
    return _describe(bad, got, expected) if bad.any() else ""


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """Float bit patterns mapped to integers that are consecutive for consecutive representable values."""
    width = values.dtype.itemsize * 8
    bits = values.view(np.uint8 if width == 8 else np.uint16).astype(np.int64)
    sign = 1 << (width - 1)
    magnitude = bits & (sign - 1)
    return np.where(bits & sign, -magnitude, magnitude)


def _describe(bad: np.ndarray, got: np.ndarray, expected: np.ndarray) -> str:
    first = tuple(int(i) for i in np.argwhere(np.asarray(bad))[0]) if np.ndim(bad) else ()
    return (f"{int(np.sum(bad))} of {np.size(bad)} elements differ; at {first}: "
            f"{got[first]!r} != expected {expected[first]!r}")
