"""Converters, one op family per file; importing this package registers them all."""

from darp_onnx.proxy.ops import (  # noqa: F401
    activations,
    concat_split,
    conv,
    elementwise,
    gather,
    grid_sample,
    linear,
    logic,
    normalization,
    pad,
    pooling,
    recurrent,
    reduce,
    resize,
    scatter_elements,
    shape_ops,
    tensor,
)
