"""Gemm, MatMul and Einsum against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darp_onnx.proxy import build_proxy
from tests.onnx_case import assert_matches_ort, one_node_model, rand

# id -> (A shape, B shape, C shape or None, attributes, opset)
GEMM_CASES = {
    "plain": ((3, 4), (4, 5), (3, 5), {}, 17),
    "no_c": ((3, 4), (4, 5), None, {}, 17),
    "trans_b": ((3, 4), (5, 4), (5,), {"transB": 1}, 17),
    "trans_a": ((4, 3), (4, 5), (1, 5), {"transA": 1}, 17),
    "trans_both_alpha_beta": ((4, 3), (5, 4), (3, 1),
                              {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, 17),
    "scalar_c": ((3, 4), (4, 5), (), {"beta": -1.5}, 17),
    "beta_zero": ((3, 4), (4, 5), (3, 5), {"beta": 0.0}, 17),
    "opset9_c_required": ((3, 4), (5, 4), (5,), {"transB": 1}, 9),
    "opset11_no_c": ((3, 4), (4, 2), None, {"alpha": 3.0}, 11),
}


@pytest.mark.parametrize("case", GEMM_CASES, ids=list(GEMM_CASES))
def test_gemm(case):
    a_shape, b_shape, c_shape, attrs, opset = GEMM_CASES[case]
    inits = {"b": rand(*b_shape, seed=1)}
    if c_shape is not None:
        inits["c"] = rand(*c_shape, seed=2)
    model = one_node_model("Gemm", {"a": rand(*a_shape)}, initializers=inits, opset=opset, **attrs)
    assert_matches_ort(model, {"a": rand(*a_shape)})


def test_gemm_runtime_operands():
    feeds = {"a": rand(3, 4), "b": rand(5, 4, seed=1), "c": rand(5, seed=2)}
    model = one_node_model("Gemm", feeds, transB=1)
    assert_matches_ort(model, feeds)


def test_gemm_gradients():
    inits = {"b": rand(5, 4, seed=1), "c": rand(5, seed=2)}
    model = one_node_model("Gemm", {"a": rand(3, 4)}, initializers=inits, transB=1, alpha=0.5)
    proxy = build_proxy(model)
    proxy(torch.from_numpy(rand(3, 4))).sum().backward()
    assert len(list(proxy.parameters())) == 2
    for p in proxy.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


# id -> (A shape, B shape)
MATMUL_CASES = {
    "2d": ((3, 4), (4, 5)),
    "batched_3d": ((2, 3, 4), (2, 4, 5)),
    "broadcast_rhs_2d": ((2, 3, 4), (4, 5)),
    "broadcast_lhs_2d": ((3, 4), (2, 4, 5)),
    "broadcast_batch_dims": ((2, 1, 3, 4), (1, 5, 4, 6)),
    "vector_lhs": ((4,), (2, 4, 5)),
    "vector_rhs": ((2, 3, 4), (4,)),
    "vector_vector": ((4,), (4,)),
}


@pytest.mark.parametrize("case", MATMUL_CASES, ids=list(MATMUL_CASES))
def test_matmul(case):
    a_shape, b_shape = MATMUL_CASES[case]
    feeds = {"a": rand(*a_shape), "b": rand(*b_shape, seed=1)}
    assert_matches_ort(one_node_model("MatMul", feeds), feeds)


def test_matmul_int64_opset13():
    feeds = {"a": np.arange(12, dtype=np.int64).reshape(3, 4),
             "b": np.arange(8, dtype=np.int64).reshape(4, 2)}
    assert_matches_ort(one_node_model("MatMul", feeds, opset=13), feeds)


def test_matmul_gradient_reaches_weight():
    model = one_node_model("MatMul", {"a": rand(2, 3, 4)}, initializers={"w": rand(4, 5, seed=1)})
    proxy = build_proxy(model)
    proxy(torch.from_numpy(rand(2, 3, 4))).sum().backward()
    assert proxy.tensor("w").grad is not None


# id -> (equation, operand shapes)
EINSUM_CASES = {
    "attention_scores": ("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    "attention_values": ("bhij,bhjd->bhid", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    "matmul": ("ij,jk->ik", [(3, 4), (4, 5)]),
    "batch_matmul": ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    "transpose": ("ij->ji", [(3, 4)]),
    "trace_like_sum": ("ii->i", [(4, 4)]),
    "reduce_all": ("ij->", [(3, 4)]),
    "outer": ("i,j->ij", [(3,), (4,)]),
    "implicit_output": ("ij,jk", [(3, 4), (4, 5)]),
    "ellipsis": ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    "spaces": ("b i d, b j d -> b i j", [(2, 3, 4), (2, 5, 4)]),
    "three_operands": ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
}


@pytest.mark.parametrize("case", EINSUM_CASES, ids=list(EINSUM_CASES))
def test_einsum(case):
    equation, shapes = EINSUM_CASES[case]
    feeds = {f"x{i}": rand(*shape, seed=i) for i, shape in enumerate(shapes)}
    assert_matches_ort(one_node_model("Einsum", feeds, opset=12 if case == "matmul" else 17,
                                      equation=equation), feeds)
