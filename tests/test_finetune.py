"""Fine-tuning: loss goes down, new heads, inherit/reinit, frozen backbone, BatchNorm batch statistics,
bad data errors (exit code 1), safe writing. Small seeded runs on the sample models."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from darp_onnx.cli.app import app
from darp_onnx.errors import BadInputError
from darp_onnx.proxy import build_proxy
from darp_onnx.proxy.ops.normalization import BatchNormModule
from darp_onnx.runtime.session import make_session
from darp_onnx.training.dataset import Dataset
from darp_onnx.training.head import find_head, replace_head
from darp_onnx.workflows.finetune import finetune
from tests.onnx_case import IR_VERSION

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _few_shot(k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(SAMPLES / "data" / "digits_target.npz")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(data["train_labels"] == c))[:k] for c in range(5)])
    return data["train_input"][idx], data["train_labels"][idx]


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    for name in ("resnet", "yolov8"):
        shutil.copy(SAMPLES / f"{name}.onnx", tmp_path / f"{name}.onnx")
    x, y = _few_shot()
    np.savez(tmp_path / "target.npz", input=x, labels=y)
    return tmp_path


def _inits(path: Path) -> dict[str, bytes]:
    return {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer}


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    return make_session(str(path)).run(None, {"input": x})[0]


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))


def test_finetune_lowers_loss_and_keeps_input(work: Path) -> None:
    before = hashlib.sha256((work / "yolov8.onnx").read_bytes()).hexdigest()
    result = finetune(work / "yolov8.onnx", data=work / "target.npz", steps=20, batch_size=16, lr=3e-3,
                      device="cpu", eval_every=5)
    assert result.output == str(work / "yolov8.finetuned.onnx")
    x, y = _few_shot()
    before_loss = _cross_entropy(_ort(work / "yolov8.onnx", x), y)
    assert _cross_entropy(_ort(Path(result.output), x), y) < 0.5 * before_loss
    assert result.val_loss_best < result.val_loss_initial
    assert result.trainable_parameters > 0 and result.frozen_parameters == 0
    assert hashlib.sha256((work / "yolov8.onnx").read_bytes()).hexdigest() == before


def test_deterministic_for_a_seed(work: Path) -> None:
    paths = [work / "a.onnx", work / "b.onnx"]
    for path in paths:
        finetune(work / "yolov8.onnx", data=work / "target.npz", output=path, steps=3, batch_size=8,
                 device="cpu", val_fraction=0)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_new_head_changes_output_width(work: Path) -> None:
    result = finetune(work / "resnet.onnx", data=work / "target.npz", output=work / "k7.onnx", steps=2,
                      batch_size=8, new_head=7, device="cpu", val_fraction=0)
    head = find_head(onnx.load(str(work / "resnet.onnx")))
    assert result.head == head.node and result.new_head == 7
    out = _ort(work / "k7.onnx", _few_shot()[0][:3])
    assert out.shape == (3, 7)
    written = onnx.load(str(work / "k7.onnx"))
    assert written.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 7
    inits = {t.name: numpy_helper.to_array(t) for t in written.graph.initializer}
    assert inits[head.weight].shape == (7, head.fan_in) and inits[head.bias].shape == (7,)


def test_inherit_keeps_and_reinit_changes_weights(work: Path) -> None:
    original = _inits(work / "resnet.onnx")
    finetune(work / "resnet.onnx", data=work / "target.npz", output=work / "inherit.onnx", steps=0,
             device="cpu")
    assert _inits(work / "inherit.onnx") == original
    result = finetune(work / "resnet.onnx", data=work / "target.npz", output=work / "reinit.onnx", steps=0,
                      init="reinit", device="cpu")
    assert result.init == "reinit"
    fresh = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(work / "reinit.onnx")).graph.initializer}
    old = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(work / "resnet.onnx")).graph.initializer}
    floats = [n for n, a in old.items() if a.dtype == np.float32 and a.size > 1]
    assert floats and all(not np.array_equal(fresh[n], old[n]) for n in floats)
    first = onnx.load(str(work / "resnet.onnx")).graph.node[0]
    stem = fresh[first.input[1]]  # a Conv weight [C, 1, 3, 3]: kaiming-uniform(a=sqrt(5)), bound 1/sqrt(9)
    assert first.op_type == "Conv" and stem.shape[1:] == (1, 3, 3)
    assert np.abs(stem).max() <= 1 / 3 + 1e-6 and np.abs(stem).max() > 0.25


def test_freeze_backbone_trains_only_the_head(work: Path) -> None:
    result = finetune(work / "resnet.onnx", data=work / "target.npz", output=work / "frozen.onnx", steps=3,
                      batch_size=8, freeze_backbone=True, device="cpu", val_fraction=0)
    head = find_head(onnx.load(str(work / "resnet.onnx")))
    assert result.trainable_parameters == head.fan_in * 5 + 5
    before, after = _inits(work / "resnet.onnx"), _inits(work / "frozen.onnx")
    assert all(after[n] == before[n] for n in before if n not in (head.weight, head.bias))
    assert after[head.weight] != before[head.weight] and after[head.bias] != before[head.bias]


def _bn_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "conv.w"),
        numpy_helper.from_array(np.ones(4, np.float32), "bn.scale"),
        numpy_helper.from_array(np.zeros(4, np.float32), "bn.bias"),
        numpy_helper.from_array(np.full(4, 0.5, np.float32), "bn.mean"),
        numpy_helper.from_array(np.full(4, 2.0, np.float32), "bn.var"),
        numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "fc.w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "fc.b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"],
                         name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


def test_batchnorm_module_batch_statistics_match_torch() -> None:
    x = torch.randn(5, 3, 4, 4) * 2 + 1
    module = BatchNormModule(1e-5)
    module.batch_statistics = True
    mean, var = torch.zeros(3), torch.ones(3)
    reference = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1).train()
    y = module.train()(x, torch.ones(3), torch.zeros(3), mean, var)
    torch.testing.assert_close(y, reference(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, reference.running_mean)
    torch.testing.assert_close(var, reference.running_var)
    module.eval()(x, torch.ones(3), torch.zeros(3), mean, var)  # inference: statistics unchanged
    torch.testing.assert_close(var, reference.running_var)


def test_reinit_trains_batchnorm_statistics_and_matches_onnxruntime(tmp_path: Path) -> None:
    model = _bn_model()
    rng = np.random.default_rng(1)
    data = Dataset({"x": rng.standard_normal((24, 1, 6, 6)).astype(np.float32) * 3 + 2},
                   rng.integers(0, 3, 24), "<bn data>")
    result = finetune(model, data=data, output=tmp_path / "bn.onnx", steps=6, batch_size=8, init="reinit",
                      device="cpu", val_fraction=0)
    assert result.batchnorm_batch_stats == 1
    written = onnx.load(str(tmp_path / "bn.onnx"))
    stats = {t.name: numpy_helper.to_array(t) for t in written.graph.initializer}
    assert not np.allclose(stats["bn.mean"], 0) and not np.allclose(stats["bn.var"], 1)
    proxy = build_proxy(written).eval()
    with torch.no_grad():
        expected = proxy(torch.from_numpy(data.inputs["x"])).numpy()
    actual = make_session(written).run(None, {"x": data.inputs["x"]})[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert all(not m.batch_statistics for m in proxy.nodes if isinstance(m, BatchNormModule))


def test_replace_head_on_matmul_add() -> None:
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="proj"),
             helper.make_node("Add", ["m", "b"], ["y"], name="bias")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    head = find_head(model)
    assert (head.node, head.weight, head.bias, head.width, head.fan_in) == ("proj", "w", "b", 3, 4)
    new = replace_head(model, 6, seed=0)
    out = make_session(new).run(None, {"x": np.ones((2, 4), np.float32)})[0]
    assert out.shape == (2, 6) and np.abs(numpy_helper.to_array(new.graph.initializer[0])).max() <= 0.5
    assert model.graph.initializer[0].dims == [4, 3]  # the input model is not changed


def test_replace_head_names_the_node_without_projection() -> None:
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], name="pool", keepdims=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    with pytest.raises(BadInputError, match="'pool' \\(ReduceMean\\)"):
        replace_head(model, 3)


def _bad_data(tmp_path: Path, case: str) -> Path:
    x, y = _few_shot(2)
    arrays = {"no_labels": {"input": x}, "out_of_range": {"input": x, "labels": y + 3},
              "wrong_shape": {"input": x[:, :, :16, :16], "labels": y},
              "nan": {"input": np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x),
                      "labels": y}}[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("case", "message"), [
    ("no_labels", "has no labels"),
    ("out_of_range", "label 7 is out of range for the model's 5 classes; pass --new-head 8"),
    ("wrong_shape", "axis 2 must be 32"),
    ("nan", "contains NaN or Inf"),
])
def test_bad_data_exits_1(work: Path, case: str, message: str) -> None:
    result = runner.invoke(app, ["finetune", str(work / "resnet.onnx"), "--data", str(_bad_data(work, case)),
                                 "-q", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert not (work / "resnet.finetuned.onnx").exists()


def test_cli_refuses_overwrite_without_force(work: Path) -> None:
    out = work / "adapted.onnx"
    out.write_bytes(b"keep me")
    args = ["finetune", str(work / "yolov8.onnx"), "--data", str(work / "target.npz"), "-o", str(out),
            "--steps", "2", "--batch-size", "8", "--device", "cpu", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "already exists" in result.output
    assert out.read_bytes() == b"keep me"
    result = runner.invoke(app, [*args, "--force", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["output"] == str(out) and document["steps_run"] == 2
    assert _ort(out, _few_shot()[0][:2]).shape == (2, 5)


def test_package_attribute_stays_the_function(work: Path) -> None:
    import darp_onnx

    with pytest.raises(BadInputError, match="is the input model"):
        darp_onnx.finetune(work / "resnet.onnx", data=work / "target.npz", output=work / "resnet.onnx",
                           force=True)
    assert callable(darp_onnx.finetune)
