"""Reading node attributes: the one place that turns `AttributeProto`s into Python values (strings
decoded, tensors as numpy arrays). The proxy's converters, the channel rules, the cost model, the
rewriter and the reports all read attributes through here."""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper, numpy_helper


def attribute_value(attr: onnx.AttributeProto) -> Any:
    """The Python value of one attribute: bytes decoded as UTF-8, tensors as numpy arrays."""
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """All attributes of `node` by name, as `attribute_value` reads them."""
    return {attr.name: attribute_value(attr) for attr in node.attribute}


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """One attribute of `node`, or `default` when absent."""
    for attr in node.attribute:
        if attr.name == name:
            return attribute_value(attr)
    return default


def int_attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    """An integer attribute of `node`, or `default` when absent."""
    return int(attribute(node, name, default))
