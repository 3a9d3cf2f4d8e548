"""Ingestion of what other exporters write: one small onnx.helper model per failure class found on
the real-model corpus (benchmarks/real_models.toml)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from darp_onnx.cost import CostModel
from darp_onnx.errors import BadInputError, DarpError, UnsupportedOpError
from darp_onnx.failures import StageError, in_stage
from darp_onnx.groups import analyse
from darp_onnx.load.ingest import ingest
from darp_onnx.load.shapes import static_shapes
from darp_onnx.proxy import build_proxy
from darp_onnx.training.batching import is_batch_major
from tests.groups.builder import GraphBuilder


def _loose(b: GraphBuilder, *outputs: str) -> onnx.ModelProto:
    """The built model without shape inference (as some exporters ship it)."""
    from onnx import TensorProto, helper

    outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
    graph = helper.make_graph(b.nodes, "synthetic", b.inputs, outs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)], ir_version=10)


def paddle_like_names() -> onnx.ModelProto:
    """paddle2onnx: Constant nodes without names, other names repeated."""
    b = GraphBuilder(11)
    h = b.cbr(b.input("x", [1, 3, 8, 8]), 3, 6)
    model = b.build(b.conv(h, 6, 4))
    model.graph.node[0].name = ""
    model.graph.node[2].name = model.graph.node[1].name
    return model


def runtime_reshape(batch: int | str = 1) -> onnx.ModelProto:
    """A Reshape target computed at run time through a float detour that static inference cannot follow
    (Shape -> Cast -> Mul -> Cast -> Reshape), feeding a Conv: its output has no static shape."""
    b = GraphBuilder(12)
    h = b.cbr(b.input("x", [batch, 3, 8, 8]), 3, 6)
    shape = b.op("Cast", b.op("Mul", b.op("Cast", b.op("Shape", h), to=1), b.const(np.float32(1.0))), to=7)
    r = b.op("Reshape", h, shape)
    return _loose(b, b.conv(r, 6, 4))


def fixed_batch() -> onnx.ModelProto:
    """A graph that fixes batch 1 (Reshape to [1, -1]) and writes detections as [N, 3]."""
    b = GraphBuilder(13)
    h = b.cbr(b.cbr(b.input("x", ["batch", 3, 4, 4]), 3, 8), 8, 4)
    flat = b.op("Reshape", h, b.const(np.array([1, -1], dtype=np.int64)))
    dets = b.op("Reshape", b.op("Gemm", flat, b.weight(4 * 16, 6)), b.const(np.array([2, 3], dtype=np.int64)))
    return b.build(dets)


def shared_bias() -> onnx.ModelProto:
    """TorchScript: one zero bias stored once, handed to two Convs through Identity nodes."""
    b = GraphBuilder(14)
    zero = b.const(np.zeros(6, dtype=np.float32), "bias")
    x = b.input("x", [1, 3, 8, 8])
    h = b.op("Relu", b.op("Conv", x, b.weight(6, 3, 3, 3), b.op("Identity", zero), pads=[1] * 4))
    h = b.op("Relu", b.op("Conv", h, b.weight(6, 6, 3, 3), b.op("Identity", zero), pads=[1] * 4))
    return b.build(b.conv(h, 6, 4))


def test_unnamed_and_duplicate_nodes_are_named_inside():
    model = paddle_like_names()
    kept = model.graph.node[3].name
    named = ingest(model, {}).model
    names = [n.name for n in named.graph.node]
    assert "" not in names and len(set(names)) == len(names)
    assert kept in names and names[0] == f"{model.graph.node[0].op_type}_0"
    assert analyse(named).prunable()
    assert model.graph.node[0].name == ""  # the input is never modified


def test_runtime_reshape_gets_observed_shapes_and_costs():
    model = runtime_reshape()
    conv_out = model.graph.output[0].name
    assert conv_out not in static_shapes(model)  # the failure class: no static shape
    ingested = ingest(model, {})
    assert ingested.shape_sources["symbolic"] + ingested.shape_sources["onnxruntime"] > 0 and not ingested.unknown
    assert ingested.shapes[conv_out] == (1, 4, 8, 8)
    cost = CostModel(ingested.model, analyse(ingested.model), {}, observed=ingested.shapes)
    assert cost.full_macs == 1 * 4 * 8 * 8 * 6 * 9 + 1 * 6 * 8 * 8 * 3 * 9


def test_observed_shapes_fill_in_when_symbolic_inference_fails(monkeypatch):
    import darp_onnx.load.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_symbolic", lambda model: None)  # it fails on 3 corpus models
    ingested = ingest(runtime_reshape(), {})
    assert ingested.shape_sources["onnxruntime"] > 0 and not ingested.unknown
    cost = CostModel(ingested.model, analyse(ingested.model), {}, observed=ingested.shapes)
    assert cost.full_macs == 1 * 4 * 8 * 8 * 6 * 9 + 1 * 6 * 8 * 8 * 3 * 9


def test_observed_shapes_are_written_with_their_element_type(monkeypatch):
    """A tensor static inference left without a value_info gets one from the onnxruntime run: with its
    element type, or onnxruntime refuses the model ('Invalid tensor data type 0'; a YOLOv5 from PyPI, whose
    un-shared shape vectors had no value_info, failed so at validation after its whole search)."""
    import onnxruntime as ort

    import darp_onnx.load.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_symbolic", lambda model: None)
    ingested = ingest(runtime_reshape(), {})
    assert ingested.shape_sources["onnxruntime"] > 0
    assert all(v.type.tensor_type.elem_type != onnx.TensorProto.UNDEFINED for v in ingested.model.graph.value_info)
    ort.InferenceSession(ingested.model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_an_ingested_model_onnxruntime_refuses_is_caught_at_ingest(monkeypatch):
    """Whatever the written shapes get wrong, the model that leaves ingest loads in onnxruntime: a copy it
    refused used to fail only at validation, after the whole search, as an error about the user's model."""
    import onnxruntime as ort

    import darp_onnx.load.ingest as ingest_module

    def untyped(model, name, source, dims=None, elem_type=None, free_axes=()):
        value = model.graph.value_info.add()  # the old bug: dims without an element type
        value.name = name
        value.type.tensor_type.shape.dim.add().dim_value = 1

    monkeypatch.setattr(ingest_module, "_symbolic", lambda model: None)
    monkeypatch.setattr(ingest_module, "_set_shape", untyped)
    model = runtime_reshape()
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    ingested = ingest(model, {})
    assert any("kept out of the model's value_info" in note for note in ingested.notes)
    assert ingested.shapes and not ingested.unknown  # the table the cost model reads is still there
    ort.InferenceSession(ingested.model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_observed_shapes_leave_the_batch_axis_free(monkeypatch):
    """Shapes observed at batch 1 and written with that batch fixed made onnxruntime expect batch 1 from
    every run of the model (a warning per run, and the fixed size propagates through its shape inference)."""
    import onnxruntime as ort

    import darp_onnx.load.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_symbolic", lambda model: None)
    ingested = ingest(runtime_reshape(batch="N"), {"x": (1, 3, 8, 8)})
    observed = [v for v in ingested.model.graph.value_info if v.name in ingested.shapes and v.name != "x"]
    reshaped = [v for v in observed if v.name.startswith("reshape")]
    assert reshaped and all(not v.type.tensor_type.shape.dim[0].HasField("dim_value") for v in reshaped)
    assert [d.dim_value for d in reshaped[0].type.tensor_type.shape.dim[1:]] == [6, 8, 8]
    session = ort.InferenceSession(ingested.model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.zeros((3, 3, 8, 8), np.float32)})[0].shape == (3, 4, 8, 8)


def test_a_dynamic_dimension_declared_as_minus_one_loads(tmp_path):
    """paddle2onnx writes dynamic dims as -1 ([-1, 3, -1, -1]); onnx's inference made 0-sized value_info of
    them, which onnxruntime refused ("Invalid Target shape product of 0", a PaddleOCR direction classifier)."""
    import onnxruntime as ort

    from darp_onnx.load.io import load_model

    b = GraphBuilder(25)
    h = b.op("GlobalAveragePool", b.cbr(b.input("x", [-1, 3, -1, -1]), 3, 8))
    flat = b.op("Reshape", h, b.const(np.array([0, -1], dtype=np.int64)))
    model = b.build(b.op("Gemm", flat, b.weight(8, 2)))
    path = tmp_path / "paddle_like.onnx"
    onnx.save(model, path)
    loaded = load_model(path)
    dims = [d for v in [*loaded.graph.input, *loaded.graph.value_info] for d in v.type.tensor_type.shape.dim]
    assert not any(d.HasField("dim_value") and d.dim_value <= 0 for d in dims)
    session = ort.InferenceSession(loaded.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.zeros((2, 3, 16, 20), np.float32)})[0].shape == (2, 2)


def test_unknown_shape_is_a_one_line_error_not_a_key_error():
    model = runtime_reshape()
    analysis = analyse(model)
    with pytest.raises(BadInputError, match="shape of .* is unknown"):
        CostModel(model, analysis, {})


def test_fixed_batch_graph_is_detected():
    model = ingest(fixed_batch(), {"x": (1, 3, 4, 4)}).model
    assert not is_batch_major(build_proxy(model), model, {"x": (1, 3, 4, 4)})
    batch_major = GraphBuilder(15)
    ok = batch_major.build(batch_major.conv(batch_major.input("x", ["n", 3, 4, 4]), 3, 2))
    assert is_batch_major(build_proxy(ok), ok, {"x": (1, 3, 4, 4)})


def test_convolutions_with_a_declared_batch_of_one_run_in_micro_batches(tmp_path):
    """A fully convolutional graph whose input declares batch 1 (tf2onnx/keras exports: 1x256x256x3): the
    proxy runs a batch of 2 alike, but onnxruntime refuses any batch but 1, so it is not batch-major; before,
    prune ran the reference at batch 32 and ended in 'onnxruntime fails to run it'."""
    import darp_onnx

    b = GraphBuilder(23)
    model = b.build(b.conv(b.op("Relu", b.conv(b.input("x", [1, 3, 8, 8]), 3, 8)), 8, 4))
    assert not is_batch_major(build_proxy(model), model, {"x": (1, 3, 8, 8)})
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.6, search_steps=4, finetune_steps=2,
                             synthetic_samples=8, latency_runs=2, channel_multiple=1)
    assert result.flops_after < result.flops_before


def test_a_batch_declared_as_minus_one_is_dynamic():
    """paddle2onnx declares a dynamic batch as dim_value -1; onnxruntime runs any size there. Counted as fixed,
    every Paddle export trained in micro-batches (ppocr_cls's data-free fine-tune then matched its stacked
    [N, 1, 2] class scores by MSE and the loss rose 2.3 -> 75 in three steps)."""
    b = GraphBuilder(24)
    model = b.build(b.conv(b.op("Relu", b.conv(b.input("x", [-1, 3, 8, 8]), 3, 8)), 8, 4))
    assert is_batch_major(build_proxy(model), model, {"x": (1, 3, 8, 8)})


def test_fixed_batch_graph_prunes_in_micro_batches(tmp_path):
    import darp_onnx

    model = fixed_batch()
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.7, input_shapes={"x": (1, 3, 4, 4)},
                             search_steps=4, finetune_steps=2, batch_size=4, synthetic_samples=8, latency_runs=2,
                             channel_multiple=1, max_drift="off")  # 4 + 2 steps test micro-batches, not the fit
    assert result.flops_after < result.flops_before
    written = onnx.load(str(tmp_path / "p.onnx"))
    assert [o.name for o in written.graph.output] == [o.name for o in model.graph.output]


def test_shared_constants_are_unshared():
    model = shared_bias()
    # the analysis alone couples the two convolutions that read one bias (one group of 6, not frozen) ...
    shared = [g for g in analyse(model).groups if not g.frozen]
    assert [g.size for g in shared] == [6]
    ingested = ingest(model, {})
    assert ingested.unshared >= 2
    # ... un-shared, each convolution's channels are a group of their own
    groups = analyse(ingested.model).groups
    assert sorted(g.size for g in groups if not g.frozen) == [6, 6]
    assert not [g.frozen for g in groups if g.frozen and ("per-channel" in g.frozen or "also read" in g.frozen)]
    assert not [n for n in ingested.model.graph.node if n.op_type == "Identity"]


def test_quantized_graph_is_refused_in_one_line():
    b = GraphBuilder(16)
    q, scale, zero = b.op("DynamicQuantizeLinear", b.input("x", [1, 4]), outputs=3)
    model = _loose(b, q, scale, zero)
    with pytest.raises(UnsupportedOpError, match="quantized graph") as info:
        ingest(model, {})
    assert "\n" not in str(info.value)


def test_prune_says_a_quantized_graph_is_quantized(tmp_path):
    import darp_onnx

    b = GraphBuilder(16)
    q, scale, zero = b.op("DynamicQuantizeLinear", b.input("x", [1, 4]), outputs=3)
    with pytest.raises(UnsupportedOpError, match="quantized graph"):
        darp_onnx.prune(_loose(b, q, scale, zero), output=tmp_path / "p.onnx", target_flops=0.5)


def test_control_flow_is_refused_in_one_line():
    from onnx import TensorProto, helper

    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "b", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["out"], name="if0", then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [cond, helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    with pytest.raises(UnsupportedOpError, match="'if0' \\(If\\): control flow"):
        ingest(model, {})


def test_exception_in_a_stage_names_stage_and_node(monkeypatch):
    import darp_onnx.groups.analysis as analysis_module

    def broken_rule(node):
        def rule(tracer, node):
            raise KeyError("boom")
        return rule

    monkeypatch.setattr(analysis_module, "rule_for", broken_rule)
    model = ingest(paddle_like_names(), {}).model
    with pytest.raises(StageError) as info, in_stage("analysis"):
        analyse(model)
    message = str(info.value)
    assert message.startswith("analysis failed at node '") and "KeyError" in message and "\n" not in message
    assert info.value.stage == "analysis" and isinstance(info.value, DarpError)
    assert isinstance(info.value.__cause__, KeyError)  # --debug shows where it came from


def test_proxy_failure_names_the_node():
    model = ingest(fixed_batch(), {}).model
    proxy = build_proxy(model)
    x = np.zeros((3, 3, 4, 4), np.float32)
    import torch

    with pytest.raises(StageError, match=r"search failed at node '\w+' \((Reshape|Gemm)\)"), in_stage("search"):
        proxy.run({"x": torch.from_numpy(x)})


def test_unknown_shape_freezes_what_touches_it():
    model = runtime_reshape()  # no shape inference: the Reshape's output has no shape
    analysis = analyse(model)
    assert any("is unknown" in (g.frozen or "") for g in analysis.groups)


def test_distillation_reads_micro_batch_outputs_per_sample():
    import torch

    from darp_onnx.search.loss import TaskLoss

    teacher = np.random.default_rng(0).standard_normal((6, 1, 5)).astype(np.float32)  # fixed batch 1, stacked
    loss = TaskLoss(teacher=[teacher])
    idx = np.array([4, 1])
    same = loss((torch.from_numpy(teacher[idx]),), idx)
    other = loss((torch.from_numpy(teacher[idx][:, :, ::-1].copy()),), idx)
    assert float(same) == pytest.approx(0.0, abs=1e-6) and float(other) > 0  # KL on [samples, classes]


def test_output_shape_static_inference_cannot_follow_survives_the_rewrite():
    """PP-OCRv4's recogniser: the rewritten model's output shape is cleared and strict inference cannot
    recompute it; the declared one (output channels are never pruned) must be kept, not a broken type."""
    from onnx import TensorProto, helper

    from darp_onnx.rewrite import rewrite

    model = runtime_reshape()
    model.graph.output[0].type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, [1, 4, 8, 8]))
    ingested = ingest(model, {}).model
    analysis = analyse(ingested)
    rewritten = rewrite(ingested, analysis, analysis.all_kept())
    dims = rewritten.graph.output[0].type.tensor_type.shape.dim
    assert len(dims) == 4 and dims[1].dim_value == 4


def test_prune_turns_an_unexpected_exception_into_a_stage_error(monkeypatch, tmp_path):
    import darp_onnx
    import darp_onnx.workflows.prune as prune_module

    def broken(*args, **kwargs):
        raise IndexError("index 11 is out of bounds for dimension 0 with size 1")

    monkeypatch.setattr(prune_module, "run_darp", broken)
    with pytest.raises(StageError, match=r"^search failed: IndexError: index 11") as info:
        darp_onnx.prune(paddle_like_names(), output=tmp_path / "p.onnx", target_flops=0.8, search_steps=2,
                        finetune_steps=0, synthetic_samples=4, channel_multiple=1)
    assert info.value.exit_code == 1 and not (tmp_path / "p.onnx").exists()


def test_ingestion_leaves_no_file_in_the_current_folder(tmp_path, monkeypatch):
    """onnxruntime's symbolic inference saves 'sym_shape_infer_temp.onnx' into the current folder when it is
    incomplete (onnxruntime/tools/symbolic_shape_infer.py); ingestion must not leave it in the user's folder."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from darp_onnx.load.ingest import _symbolic

    def incomplete(model, **_options):
        onnx.save_model(model, "sym_shape_infer_temp.onnx")
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(SymbolicShapeInference, "infer_shapes", staticmethod(incomplete))
    monkeypatch.chdir(tmp_path)
    assert _symbolic(shared_bias()) is None  # the shape source that runs when onnx inference leaves gaps
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_step_timer_runs_micro_batches_as_the_search_does():
    """A graph fixing batch 1: the time-budget planner times its steps and forward passes one whole feed at a
    time (a batch of 8 through the graph fails: `Reshape` to [1, -1]); found on silero_vad_v6's Pad."""
    from darp_onnx.search.step_time import measure_forward_seconds, measure_step_seconds
    from darp_onnx.training.dataset import synthetic_dataset

    model = ingest(fixed_batch(), {"x": (1, 3, 4, 4)}).model
    proxy = build_proxy(model)
    data = synthetic_dataset(model, samples=8, shapes={"x": (1, 3, 4, 4)}).as_micro_batches()
    assert data.micro_batches
    assert measure_step_seconds(proxy, analyse(model), data, 8) > 0
    assert measure_forward_seconds(proxy, data, batch=8) > 0


def test_a_proxy_failure_on_the_data_points_at_the_data():
    """madmom's key CNN given spectrogram rows as samples ([4800, 105] for an input [frames, bins]): a Conv saw
    2 frames; the message said only 'please report it'."""
    with pytest.raises(StageError, match="plan failed: RuntimeError: .*check that the --data arrays fit the "
                                         "model's inputs .*whole feeds stacked"), in_stage("plan"):
        raise RuntimeError("Kernel size can't be greater than actual input size")


def test_sizes_the_model_cannot_take_are_named_at_ingest():
    """madmom's chroma MLP at --input-shape input=1x1000 (its MatMul takes 1575) ended in 'the shape of
    matmul_2 is unknown; give --input-shape' although one was given."""
    b = GraphBuilder(44, opset=17)
    model = b.build(b.op("Relu", b.op("MatMul", b.input("x", ["n", "k"]), b.weight(8, 4))))
    with pytest.raises(BadInputError, match=r"onnxruntime cannot run the model at x=1x6 .*--input-shape"):
        ingest(model, {"x": (1, 6)}, source="chroma.onnx")
    assert ingest(model, {"x": (1, 8)}).unknown == []


def test_a_string_input_is_refused_in_one_line():
    from onnx import TensorProto, helper

    from darp_onnx.load.refusals import refuse_unprunable

    graph = helper.make_graph([helper.make_node("Identity", ["phs"], ["y"], name="id")], "g",
                              [helper.make_tensor_value_info("phs", TensorProto.STRING, [16])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    with pytest.raises(UnsupportedOpError, match="input 'phs' takes strings"):
        refuse_unprunable(model, "vogen.onnx")


def test_a_loop_is_refused_with_advice_for_loops():
    from onnx import TensorProto, helper

    from darp_onnx.load.refusals import refuse_unprunable

    body = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"]), helper.make_node("Log", ["c"], ["d"])],
                             "body", [], [])
    node = helper.make_node("Loop", ["n", ""], [], name="lstm_loop", body=body)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("n", TensorProto.INT64, [])], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    with pytest.raises(UnsupportedOpError, match="its body runs MatMul, Log.*as an ONNX LSTM/GRU op.*extract_model"):
        refuse_unprunable(model, "crnn.onnx")


def test_a_large_weight_handed_to_several_readers_through_identities_stays_one_tensor():
    """A weight-shared transformer layer (run 8 times, TorchScript: an Identity per use) grew 8-fold when each
    Identity became a copy of the weight."""
    b = GraphBuilder(17)
    big = b.const(np.random.default_rng(0).normal(size=(300, 300)).astype(np.float32), "shared")
    h = b.input("x", [1, 300])
    for _ in range(3):
        h = b.op("Relu", b.op("MatMul", h, b.op("Identity", big)))
    model = b.build(h)
    ingested = ingest(model, {})
    inits = [t for t in ingested.model.graph.initializer if t.name.startswith("shared")]
    assert len(inits) == 1
    assert [n.input[1] for n in ingested.model.graph.node if n.op_type == "MatMul"] == [inits[0].name] * 3
    assert not [n for n in ingested.model.graph.node if n.op_type == "Identity"]


def test_a_small_weight_matrix_shared_by_layers_stays_shared_and_its_readers_are_pruned_alike():
    """ALBERT runs one layer four times (TorchScript: Identities of 116 x 468 matrices); copied per reader, its
    tagger pruned to half its MACs grew from 418,960 to 547,858 parameters."""
    b = GraphBuilder(18)
    up = b.const(np.random.default_rng(0).normal(size=(8, 12)).astype(np.float32), "up")
    down = b.const(np.random.default_rng(1).normal(size=(12, 8)).astype(np.float32), "down")
    bias = b.const(np.zeros(12, np.float32), "bias")
    h = b.input("x", [1, 8])
    for _ in range(3):
        hidden = b.op("Relu", b.op("Add", b.op("MatMul", h, b.op("Identity", up)), bias))
        h = b.op("Add", h, b.op("MatMul", hidden, down))
    ingested = ingest(b.build(h), {})
    matrices = sorted(tuple(t.dims) for t in ingested.model.graph.initializer if len(t.dims) == 2)
    assert matrices == [(8, 12), (12, 8)]  # one of each, read by all three layers
    groups = [g for g in analyse(ingested.model).groups if not g.frozen and g.kind == "channel"]
    assert [g.size for g in groups] == [12]  # the three layers' hidden units: one group, pruned alike


def test_parameters_before_are_counted_as_stored_not_as_ingest_copied_them(tmp_path):
    """A bias stored once and read by two convolutions was reported as two biases before pruning (the cost
    model counts the copies ingest makes), so 'parameters before' disagreed with the file."""
    import darp_onnx
    from darp_onnx.cost import count_graph_params

    model = shared_bias()
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.7, search_steps=2, finetune_steps=1,
                             batch_size=4, synthetic_samples=8, latency_runs=2, channel_multiple=1, max_drift="off")
    assert result.params_before == count_graph_params(model) == 3 * 6 * 9 + 6 * 6 * 9 + 6 * 4 * 9 + 6 + 4


def samples_in_groups_of_four() -> onnx.ModelProto:
    """MNE's ICLabel: a batch of 4 views of one sample, reshaped to [4, -1] and averaged (batch 1 fails)."""
    b = GraphBuilder(45)
    h = b.cbr(b.cbr(b.input("x", ["batch", 2, 3, 3]), 2, 8), 8, 5)  # 45 values a sample: [4, -1] needs 4
    views = b.op("Reshape", h, b.const(np.array([4, -1], dtype=np.int64)))
    return b.build(b.op("ReduceMean", views, axes=[0], keepdims=1))


def test_a_model_whose_batch_cannot_be_one_names_the_batch_it_runs_at(tmp_path):
    """It failed in the plan with "shape '[4, -1]' is invalid for input of size 7 ... please report it"."""
    import darp_onnx

    with pytest.raises(BadInputError, match=r"runs it at batch 4: .* --input-shape x=4x2x3x3"):
        ingest(samples_in_groups_of_four(), {}, source="iclabel.onnx")
    result = darp_onnx.prune(samples_in_groups_of_four(), output=tmp_path / "p.onnx", target_flops=0.7,
                             input_shapes={"x": (4, 2, 3, 3)}, search_steps=4, finetune_steps=2, batch_size=4,
                             synthetic_samples=8, latency_runs=2, channel_multiple=1, max_drift="off")
    assert result.flops_after < result.flops_before and (tmp_path / "p.onnx").exists()


def test_a_failing_run_leaves_no_onnxruntime_log_line(capfd):
    """onnxruntime logged '[E:onnxruntime:, sequential_executor.cc ...]' to stderr beside our one-line error."""
    from darp_onnx.runtime.session import make_session

    session = make_session(samples_in_groups_of_four(), optimized=False)
    with pytest.raises(Exception, match="Reshape"):
        session.run(None, {"x": np.zeros((1, 2, 3, 3), np.float32)})
    assert "onnxruntime" not in capfd.readouterr().err


def test_inspect_counts_parameters_as_stored_like_prune(tmp_path):
    """The copies ingestion makes of a shared bias are not parameters of the model the user has."""
    import darp_onnx
    from darp_onnx.cost import count_graph_params

    model = shared_bias()
    onnx.save(model, tmp_path / "m.onnx")
    assert count_graph_params(ingest(model, {}).model) == count_graph_params(model) + 6
    assert darp_onnx.inspect(tmp_path / "m.onnx")["params"] == count_graph_params(model)


def test_the_node_count_before_is_the_given_models(tmp_path):
    """Ingestion drops the Identity nodes that hand a shared bias on; the report counts the user's nodes."""
    import darp_onnx

    model = shared_bias()
    result = darp_onnx.prune(model, output=tmp_path / "p.onnx", target_flops=0.7, search_steps=2, finetune_steps=0,
                             batch_size=4, synthetic_samples=8, latency_runs=2, channel_multiple=1, max_drift="off")
    assert result.nodes_before == len(model.graph.node) == len(ingest(model, {}).model.graph.node) + 2
