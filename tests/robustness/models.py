"""The bad and careless inputs of the corpus, built in a folder: damaged models, bad data, bad configs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.report.cases import cnn

SAMPLE = Path(__file__).resolve().parents[2] / "sample_models" / "resnet.onnx"


def tiny(*, symbolic_size: bool = True) -> onnx.ModelProto:
    """A two-conv CNN classifier; with `symbolic_size` its height and width are symbolic (H, W)."""
    model = cnn()
    if symbolic_size:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].ClearField("dim_value")
        dims[2].dim_param = "H"
        dims[3].ClearField("dim_value")
        dims[3].dim_param = "W"
    return model


def _edited(edit) -> onnx.ModelProto:
    model = tiny()
    edit(model)
    return model


def _set_weight(model: onnx.ModelProto, name: str, value: float) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    array = numpy_helper.to_array(tensor).copy()
    array.flat[3] = value
    tensor.CopyFrom(numpy_helper.from_array(array, name))


def _custom_op(model: onnx.ModelProto) -> None:
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type, relu.domain = "FancyAct", "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))


def _dangling(model: onnx.ModelProto) -> None:
    model.graph.node[1].input[0] = "nobody_makes_this"


def _unsupported(model: onnx.ModelProto) -> None:
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Hardmax"


def _opset(version: int):
    def edit(model: onnx.ModelProto) -> None:
        model.opset_import[0].version = version
    return edit


def _no_inputs(model: onnx.ModelProto) -> None:
    del model.graph.input[:]


def _escape(model: onnx.ModelProto, folder: Path) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == "fc.w")
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "320")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _missing_external(model: onnx.ModelProto, folder: Path) -> None:
    _escape(model, folder)
    tensor = next(t for t in model.graph.initializer if t.name == "fc.w")
    tensor.external_data[0].value = "weights.bin"


MODELS = {
    "model.onnx": tiny,
    "fixed.onnx": lambda: tiny(symbolic_size=False),
    "nan.onnx": lambda: _edited(lambda m: _set_weight(m, "conv2.w", float("nan"))),
    "inf.onnx": lambda: _edited(lambda m: _set_weight(m, "fc.b", float("inf"))),
    "custom.onnx": lambda: _edited(_custom_op),
    "dangling.onnx": lambda: _edited(_dangling),
    "unsupported.onnx": lambda: _edited(_unsupported),
    "future.onnx": lambda: _edited(_opset(999)),
    "ancient.onnx": lambda: _edited(_opset(3)),
    "noinputs.onnx": lambda: _edited(_no_inputs),
}


def _npz(path: Path, **arrays) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def write_data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 16, 16))
    labels = rng.integers(0, 10, 16)
    _npz(folder / "data.npz", x=x.astype(np.float32), labels=labels)
    _npz(folder / "strings.npz", x=np.array(["a"] * 16))
    _npz(folder / "scalar.npz", x=np.float32(1.0))
    _npz(folder / "nandata.npz", x=np.full((16, 3, 16, 16), np.nan, np.float32))
    _npz(folder / "toowide.npz", x=np.full((16, 3, 16, 16), 1e39))
    _npz(folder / "shape.npz", x=x[:, :2].astype(np.float32))
    _npz(folder / "rank.npz", x=x[0].astype(np.float32))
    _npz(folder / "empty.npz", x=np.zeros((0, 3, 16, 16), np.float32))
    _npz(folder / "wrongname.npz", a=x.astype(np.float32), b=x.astype(np.float32))
    _npz(folder / "fraclabels.npz", x=x.astype(np.float32), labels=labels + 0.5)
    _npz(folder / "strlabels.npz", x=x.astype(np.float32), labels=np.array(["cat"] * 16))
    _npz(folder / "fewlabels.npz", x=x.astype(np.float32), labels=labels[:5])
    _npz(folder / "negative.npz", x=x.astype(np.float32), labels=-labels - 1)
    _npz(folder / "unlabelled_scalar.npz", x=np.float64(3.0))
    _npz(folder / "bigclass.npz", x=x.astype(np.float32), labels=labels + 50)
    np.save(folder / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with open(folder / "pickled.npz", "wb") as handle:
        np.savez(handle, x=np.array([{"a": 1}] * 16, dtype=object))
    (folder / "nodata").mkdir()
    (folder / "notnpz.npz").write_text("not a zip file")


def write_configs(folder: Path) -> None:
    (folder / "broken.toml").write_text("target-flops = [unclosed\n")
    (folder / "unknown.toml").write_text("target-flopz = 0.5\n")
    (folder / "badvalue.toml").write_text('target-flops = "half"\n')
    (folder / "nan.toml").write_text("target-flops = nan\n")
    (folder / "steps.toml").write_text("steps = -5\n")


def build_workspace(folder: Path) -> Path:
    """Every input of the corpus, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in MODELS.items():
        onnx.save(make(), str(folder / name))
    for name, edit in (("escape.onnx", _escape), ("external_missing.onnx", _missing_external)):
        model = tiny()
        edit(model, folder)
        (folder / name).write_bytes(model.SerializeToString())
    good = (folder / "model.onnx").read_bytes()
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (folder / "garbage.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    (folder / "text.onnx").write_text("this is not a model\n")
    shutil.copy(SAMPLE, folder / "resnet.onnx")
    os.symlink(folder / "model.onnx", folder / "link.onnx")
    os.link(folder / "model.onnx", folder / "hard.onnx")
    (folder / "existing.onnx").write_bytes(b"keep me")
    (folder / "afolder.onnx").mkdir()
    (folder / "sub").mkdir()
    (folder / "afile").write_text("a file, not a folder")
    write_data(folder)
    write_configs(folder)
    return folder
