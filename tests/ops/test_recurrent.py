"""LSTM and GRU vs onnxruntime: directions, layouts, optional inputs and outputs, plus gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper, numpy_helper

from darp_onnx.errors import UnsupportedOpError
from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, rand, run_ort, run_proxy
from tests.ops.multi_node import graph_model

SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6
GATES = {"LSTM": 4, "GRU": 3}
OPTIONAL = {
    "LSTM": ["B", "sequence_lens", "initial_h", "initial_c", "P"],
    "GRU": ["B", "sequence_lens", "initial_h"],
}


def _state(s, layout):
    return s.transpose(1, 0, 2).copy() if layout else s


def _build(op, *, direction="forward", layout=0, use=(), outputs=None, opset=17, runtime=(), batch=BATCH,
           symbolic=False, **attrs):
    """An LSTM/GRU model. `use` names the optional inputs to supply, `runtime` those fed as graph inputs."""
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    x_shape = [batch, SEQ, INPUT] if layout else [SEQ, batch, INPUT]
    values = {
        "W": rand(dirs, g * HIDDEN, INPUT, seed=1),
        "R": rand(dirs, g * HIDDEN, HIDDEN, seed=2),
        "B": rand(dirs, 2 * g * HIDDEN, seed=3),
        "sequence_lens": np.full(batch, SEQ, np.int32),
        "initial_h": _state(rand(dirs, batch, HIDDEN, seed=4), layout),
        "initial_c": _state(rand(dirs, batch, HIDDEN, seed=5), layout),
        "P": rand(dirs, 3 * HIDDEN, seed=6),
    }
    names = ["X", "W", "R"] + [n if n in use else "" for n in OPTIONAL[op]]
    while names[-1] == "":
        names.pop()
    n_out = 3 if op == "LSTM" else 2
    outputs = outputs or ["Y", "Y_h", "Y_c"][:n_out]
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, direction=direction, **attrs)
    if opset >= 14:
        node.attribute.append(helper.make_attribute("layout", layout))
    x = rand(SEQ, batch, INPUT, seed=7)
    feeds = {"X": x.transpose(1, 0, 2).copy() if layout else x}
    x_dims = list(x_shape)
    if symbolic:
        x_dims[1 - layout] = "N"
    inputs = {"X": (np.float32, x_dims)}
    inits = {}
    for n in names[1:]:
        if not n:
            continue
        if n in runtime:
            feeds[n] = values[n]
            inputs[n] = (values[n].dtype, list(values[n].shape))
        else:
            inits[n] = values[n]
    model = graph_model([node], inputs, [o for o in outputs if o], initializers=inits, opset=opset)
    return model, feeds


LSTM_CASES = [
    ("forward-noB", {}),
    ("forward-B", {"use": ("B",)}),
    ("reverse-B-init", {"direction": "reverse", "use": ("B", "initial_h", "initial_c")}),
    ("bidirectional-all", {"direction": "bidirectional", "use": ("B", "initial_h", "initial_c")}),
    ("bidirectional-init-h-only", {"direction": "bidirectional", "use": ("initial_h",)}),
    ("peepholes", {"direction": "bidirectional", "use": ("B", "initial_c", "P")}),
    ("seq-lens-full", {"use": ("B", "sequence_lens")}),
    ("seq-lens-full-runtime", {"use": ("sequence_lens",), "runtime": ("sequence_lens",)}),
    ("runtime-init-states", {"use": ("B", "initial_h", "initial_c"), "runtime": ("initial_h", "initial_c")}),
    ("only-Y", {"outputs": ["Y"], "use": ("B",)}),
    ("only-Y_h", {"outputs": ["", "Y_h"], "direction": "reverse"}),
    ("only-Y_c", {"outputs": ["", "", "Y_c"], "use": ("B",)}),
    ("default-activations-explicit", {"activations": ["Sigmoid", "Tanh", "Tanh"]}),
    ("input-forget-0", {"input_forget": 0}),
    ("opset7", {"opset": 7, "use": ("B", "initial_h")}),
    ("opset14", {"opset": 14, "direction": "reverse", "use": ("B",)}),
]

GRU_CASES = [
    ("forward-noB", {}),
    ("forward-B", {"use": ("B",)}),
    ("forward-B-lbr", {"use": ("B",), "linear_before_reset": 1}),
    ("forward-noB-lbr", {"linear_before_reset": 1}),
    ("reverse-init", {"direction": "reverse", "use": ("B", "initial_h")}),
    ("bidirectional", {"direction": "bidirectional", "use": ("B", "initial_h")}),
    ("bidirectional-lbr",
     {"direction": "bidirectional", "use": ("B", "initial_h"), "linear_before_reset": 1}),
    ("seq-lens-full", {"use": ("B", "sequence_lens")}),
    ("runtime-init-h", {"use": ("initial_h",), "runtime": ("initial_h",)}),
    ("only-Y", {"outputs": ["Y"], "use": ("B",)}),
    ("only-Y_h", {"outputs": ["", "Y_h"], "direction": "bidirectional"}),
    ("default-activations-explicit", {"direction": "bidirectional", "activations": ["Sigmoid", "Tanh"] * 2}),
    ("opset7", {"opset": 7, "use": ("B", "initial_h"), "linear_before_reset": 1}),
    ("opset14", {"opset": 14, "direction": "reverse", "use": ("B",)}),
]


@pytest.mark.parametrize("kwargs", [c[1] for c in LSTM_CASES], ids=[c[0] for c in LSTM_CASES])
def test_lstm(kwargs):
    model, feeds = _build("LSTM", **kwargs)
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("kwargs", [c[1] for c in GRU_CASES], ids=[c[0] for c in GRU_CASES])
def test_gru(kwargs):
    model, feeds = _build("GRU", **kwargs)
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_symbolic_batch(op):
    model, _ = _build(op, direction="bidirectional", use=("B",), symbolic=True)
    for n in (1, 4):
        assert_matches_ort(model, {"X": rand(SEQ, n, INPUT, seed=n)})


@pytest.mark.parametrize(
    "op,kwargs",
    [
        ("LSTM", {"direction": "bidirectional", "use": ("B", "initial_h", "initial_c")}),
        ("LSTM", {"direction": "reverse", "use": ("B", "initial_h", "initial_c"), "runtime": ("initial_h",)}),
        ("GRU", {"direction": "bidirectional", "use": ("B", "initial_h")}),
        ("GRU", {"use": ("B", "initial_h"), "linear_before_reset": 1}),
    ],
    ids=["lstm-bidirectional", "lstm-reverse-runtime-h", "gru-bidirectional", "gru-lbr"],
)
def test_layout1_is_batch_major_layout0(op, kwargs):
    """onnxruntime's CPU kernels refuse layout=1, so compare with its layout=0 result, transposed."""
    model0, feeds0 = _build(op, layout=0, **kwargs)
    model1, feeds1 = _build(op, layout=1, **kwargs)
    expected = run_ort(model0, feeds0)
    actual = run_proxy(model1, feeds1)
    np.testing.assert_allclose(actual[0], expected[0].transpose(2, 0, 1, 3), rtol=1e-4, atol=1e-5)
    for a, e in zip(actual[1:], expected[1:], strict=True):
        np.testing.assert_allclose(a, e.transpose(1, 0, 2), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "op,kwargs,match",
    [
        ("LSTM", {"clip": 2.0}, "clip"),
        ("LSTM", {"input_forget": 1}, "input_forget"),
        ("LSTM", {"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations"),
        ("GRU", {"clip": 1.0}, "clip"),
        ("GRU", {"activations": ["HardSigmoid", "Tanh"]}, "activations"),
    ],
    ids=["lstm-clip", "lstm-input-forget", "lstm-activations", "gru-clip", "gru-activations"],
)
def test_unsupported_attributes(op, kwargs, match):
    model, _ = _build(op, **kwargs)
    with pytest.raises(UnsupportedOpError, match=match):
        build_proxy(model)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_short_sequence_lens_unsupported(op):
    model, feeds = _build(op, use=("sequence_lens",))
    lens = next(i for i in model.graph.initializer if i.name == "sequence_lens")
    lens.CopyFrom(numpy_helper.from_array(np.array([SEQ, SEQ - 2, SEQ], np.int32), "sequence_lens"))
    with pytest.raises(UnsupportedOpError, match="sequence_lens"):
        build_proxy(model)
    model, feeds = _build(op, use=("sequence_lens",), runtime=("sequence_lens",))
    feeds["sequence_lens"] = np.array([SEQ, SEQ - 1, SEQ], np.int32)
    with pytest.raises(NotImplementedError, match="sequence_lens"):
        build_proxy(model).run({k: torch.from_numpy(v) for k, v in feeds.items()})


@pytest.mark.parametrize(
    "op,kwargs",
    [
        ("LSTM", {"use": ("B", "P")}),
        ("GRU", {"use": ("B",)}),
        ("GRU", {"use": ("B",), "linear_before_reset": 1}),
    ],
    ids=["lstm", "gru", "gru-lbr"],
)
def test_weights_get_gradients(op, kwargs):
    model, feeds = _build(op, direction="bidirectional", **kwargs)
    proxy = build_proxy(model)
    outs = proxy(torch.from_numpy(feeds["X"]))
    sum(o.square().sum() for o in outs).backward()
    params = dict(proxy.named_parameters())
    assert len(params) == len(kwargs["use"]) + 2  # W, R and the float optional inputs
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
