"""What the runtime helpers report about this machine's kernels."""

from __future__ import annotations

import pytest
import torch

from darp_onnx.runtime.session import kernel_channel_multiple


@pytest.mark.parametrize(("capability", "expected"), [("AVX512", 16), ("AVX512_BF16", 16), ("AVX2", 8),
                                                      ("DEFAULT", 1), ("NO AVX", 1)])
def test_cpu_block_follows_the_vector_width(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert kernel_channel_multiple("cpu") == expected


def test_cuda_wants_multiples_of_eight():
    assert kernel_channel_multiple("cuda") == 8
