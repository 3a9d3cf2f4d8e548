"""Memory: the batch that fits a limit, a clear refusal when nothing fits, peak RSS."""

from __future__ import annotations

import pytest

from darp_onnx.errors import BadInputError
from darp_onnx.load.io import load_model
from darp_onnx.runtime.memory import activation_bytes_per_sample, parse_memory, peak_rss_bytes, plan_memory
from tests.training.digits_images import ROOT

MIB = 2**20


def test_batch_fits_the_limit():
    plan = plan_memory(limit=1000 * MIB, weight_bytes=10 * MIB, activation_bytes=10 * MIB, data_bytes=0,
                       current=100 * MIB)
    assert plan.max_batch == (1000 - 100 - 40) // 15  # 4x weights fixed, 1.5x activations per sample
    bigger = plan_memory(limit=2000 * MIB, weight_bytes=10 * MIB, activation_bytes=10 * MIB, data_bytes=0,
                         current=100 * MIB)
    assert bigger.max_batch > plan.max_batch


def test_model_that_cannot_fit_says_so():
    with pytest.raises(BadInputError) as info:
        plan_memory(limit=200 * MIB, weight_bytes=10 * MIB, activation_bytes=500 * MIB, data_bytes=0,
                    current=100 * MIB)
    assert "--max-memory" in str(info.value) and "\n" not in str(info.value)


def test_activation_bytes_grow_with_the_input_size():
    model = load_model(ROOT / "sample_models" / "resnet.onnx")
    small = activation_bytes_per_sample(model, {"input": (1, 1, 32, 32)})
    large = activation_bytes_per_sample(model, {"input": (1, 1, 64, 64)})
    assert small > 0 and 3.5 < large / small < 4.1


@pytest.mark.parametrize(("text", "size"), [("512M", 512 * MIB), ("2G", 2048 * MIB), ("1.5GB", 1536 * MIB),
                                            ("auto", None)])
def test_memory_sizes(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "-1G", "5Q"])
def test_bad_memory_sizes(text):
    with pytest.raises(BadInputError, match="--max-memory"):
        parse_memory(text)


def test_peak_rss_is_reported():
    assert peak_rss_bytes() > 10 * MIB
