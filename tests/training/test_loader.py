"""`--data-loader FILE.py:FUNCTION`: feeds from the user's function; bad paths and functions are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from darp_onnx.errors import BadInputError
from darp_onnx.training.dataset import load_from_loader
from tests.training.digits_images import image_model

LOADER = """
import numpy as np

def load_data():
    rng = np.random.default_rng(0)
    for _ in range(3):
        yield {"x": rng.standard_normal((2, 1, 8, 8)).astype(np.float32), "labels": np.array([0, 1])}

def one_sample():
    return {"x": np.ones((1, 8, 8), np.float32)}

def broken():
    raise RuntimeError("disk on fire")
    yield

def not_dicts():
    yield [1, 2]
"""

MODEL = image_model(["N", 1, 8, 8])


@pytest.fixture()
def loader_file(tmp_path):
    path = tmp_path / "my_data.py"
    path.write_text(LOADER, encoding="utf-8")
    return path


def test_default_function_batches_and_labels(loader_file):
    dataset = load_from_loader(str(loader_file), MODEL)
    assert dataset.inputs["x"].shape == (6, 1, 8, 8)
    np.testing.assert_array_equal(dataset.labels, [0, 1, 0, 1, 0, 1])


def test_max_samples_stops_reading(loader_file):
    assert len(load_from_loader(f"{loader_file}:load_data", MODEL, max_samples=3)) == 3


def test_single_sample_gets_a_batch_axis(loader_file):
    assert load_from_loader(f"{loader_file}:one_sample", MODEL).inputs["x"].shape == (1, 1, 8, 8)


@pytest.mark.parametrize(("suffix", "words"), [
    (":nosuch", "has no function 'nosuch'"),
    (":broken", "raised RuntimeError: disk on fire"),
    (":not_dicts", "not a dict"),
], ids=["missing-function", "raises", "not-dicts"])
def test_bad_function_is_one_line_error(loader_file, suffix, words):
    with pytest.raises(BadInputError) as info:
        load_from_loader(f"{loader_file}{suffix}", MODEL)
    assert words in str(info.value) and "--data-loader" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["missing.py:load_data", "data.txt:load_data"], ids=["no-file", "not-python"])
def test_bad_path_is_one_line_error(tmp_path, spec):
    with pytest.raises(BadInputError) as info:
        load_from_loader(str(tmp_path / spec), MODEL)
    assert "--data-loader" in str(info.value) and "\n" not in str(info.value)


def test_import_error_is_one_line_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import no_such_module_here\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="importing .* failed: ModuleNotFoundError"):
        load_from_loader(str(path), MODEL)
