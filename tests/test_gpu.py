"""CUDA checks: skipped with the reason where torch or onnxruntime cannot really use a GPU.

Set DARP_REQUIRE_GPU=1 (scripts/gpu_check.sh does) to turn those skips into failures.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from darp_onnx.errors import BadInputError
from darp_onnx.load.inputs import synthetic_inputs
from darp_onnx.load.io import load_model
from darp_onnx.proxy import build_proxy
from darp_onnx.runtime.session import make_session

pytestmark = pytest.mark.gpu

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
RESNET = SAMPLES / "resnet.onnx"


@pytest.fixture(scope="module")
def cuda():
    """Skip (or fail under DARP_REQUIRE_GPU) unless torch and an onnxruntime session both run on CUDA."""
    reason = None
    if not torch.cuda.is_available():
        reason = "torch.cuda.is_available() is False"
    else:
        try:
            providers = make_session(str(RESNET), "cuda").get_providers()
        except BadInputError as exc:
            reason = f"no real CUDA onnxruntime session ({exc})"
        else:
            assert providers[0] == "CUDAExecutionProvider", providers
    if reason is not None:
        if os.environ.get("DARP_REQUIRE_GPU"):
            pytest.fail(f"DARP_REQUIRE_GPU is set but {reason}")
        pytest.skip(reason)


@pytest.fixture()
def exact_fp32():
    """No TF32 in cuDNN convolutions or matmuls, so CUDA and CPU agree to fp32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", ["resnet", "mobilenetv3", "vit"])
def test_proxy_on_cuda_equals_cpu(cuda, exact_fp32, name):
    model = load_model(SAMPLES / f"{name}.onnx")
    proxy = build_proxy(model).eval()
    feeds = {k: torch.from_numpy(v) for k, v in synthetic_inputs(model, batch=4, seed=0).items()}
    with torch.no_grad():
        expected = proxy.run(feeds)
        actual = proxy.to("cuda").run({k: v.to("cuda") for k, v in feeds.items()})
    for out, value in expected.items():
        assert actual[out].is_cuda
        torch.testing.assert_close(actual[out].cpu(), value, rtol=1e-4, atol=1e-4)


def test_prune_on_cuda_is_validated_on_the_cuda_provider(cuda, tmp_path):
    from darp_onnx.api import prune, validate

    out = tmp_path / "resnet.pruned.onnx"
    result = prune(RESNET, output=out, target_flops=0.5, search_steps=6, finetune_steps=2, batch_size=16,
                   device="cuda", latency_runs=3)
    assert result.device == "cuda"
    assert result.validation["provider"] == "CUDAExecutionProvider"
    report = validate(RESNET, out, device="cuda", latency_runs=3, samples=16)
    assert report["provider"]["original"] == report["provider"]["pruned"] == "CUDAExecutionProvider"
    assert report["macs"]["ratio"] <= 0.5
    assert np.isfinite(report["fidelity"]["relative_error"])
