"""Slicing constants (initializers and Constant-node values) along their axis maps, and applying shape
edits (Reshape targets, Split sizes, Slice starts/ends, depthwise `group`)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from darp_onnx.groups.model import ChannelAnalysis, ShapeEdit
from darp_onnx.load.attributes import attribute
from darp_onnx.load.constants import constant_node_value


def slice_constants(model: onnx.ModelProto, analysis: ChannelAnalysis, masks) -> None:
    """Slice every constant that has axis maps, in place on `model` (a copy)."""
    by_const: dict[str, list] = defaultdict(list)
    for (name, axis), amap in analysis.axis_maps.items():
        by_const[name].append((axis, amap))
    graph = model.graph
    for init in graph.initializer:
        if init.name in by_const:
            value = _sliced(numpy_helper.to_array(init), by_const[init.name], masks)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in by_const:
            value, _ = constant_node_value(node, "<model>")
            new = _sliced(value, by_const[node.output[0]], masks)
            del node.attribute[:]
            tensor = numpy_helper.from_array(new, node.output[0])
            node.attribute.append(helper.make_attribute("value", tensor))
    dims = {i.name: list(i.dims) for i in graph.initializer}
    for vi in graph.input:
        if vi.name in by_const and vi.name in dims:
            shape = vi.type.tensor_type.shape
            for d, size in zip(shape.dim, dims[vi.name], strict=False):
                d.Clear()
                d.dim_value = size


def _sliced(value: np.ndarray, maps, masks) -> np.ndarray:
    for axis, amap in maps:
        value = np.take(value, amap.kept_indices(masks), axis=axis)
    return value


def apply_shape_edits(model: onnx.ModelProto, analysis: ChannelAnalysis, masks) -> None:
    """Write each edited shape constant as a fresh initializer owned by its node (shared constants stay
    untouched for their other users)."""
    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    taken = {*consts, *(o for n in graph.node for o in n.output), *(v.name for v in graph.input)}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            consts[node.output[0]] = constant_node_value(node, "<model>")[0]
    grouped: dict[tuple[str, int, str], list[ShapeEdit]] = defaultdict(list)
    for edit in analysis.shape_edits:
        grouped[(edit.node, edit.input_index, edit.attr)].append(edit)
    for (node_name, index, attr_name), edits in grouped.items():
        node = nodes.get(node_name)
        if node is None:
            continue
        if index == -1:
            _edit_attribute(node, attr_name, edits, analysis, masks)
            continue
        name = node.input[index] if index < len(node.input) else ""
        if name and name not in consts and edits[0].base:  # computed from channel counts: now a constant
            value = np.array(edits[0].base, dtype=np.int64)
        elif name:  # keep the constant's dtype (a literal may be a float cast to int later)
            value = np.array(consts[name], copy=True)
        else:  # an implicit equal Split: spell the sizes out
            value = np.array([e.hi - e.lo for e in sorted(edits, key=lambda e: e.element)], dtype=np.int64)
            _drop_attribute(node, "num_outputs")
        flat = value.reshape(-1)
        for edit in edits:
            flat[edit.element] = edit.value(analysis.axis_maps, masks)
        new_name = _unique(f"{node.name}__darp_in{index}", taken)  # a model pruned before has the base name
        new_value = flat.reshape(value.shape).astype(value.dtype)
        graph.initializer.append(numpy_helper.from_array(new_value, new_name))
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = new_name


def _unique(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _edit_attribute(node: onnx.NodeProto, attr_name: str, edits, analysis, masks) -> None:
    current = attribute(node, attr_name)
    if edits[0].element == -1:
        value = edits[0].value(analysis.axis_maps, masks)  # depthwise `group`: one per kept channel
    else:
        implicit = [e.hi - e.lo for e in sorted(edits, key=lambda e: e.element)]
        items = list(current) if current is not None else implicit
        for edit in edits:
            items[edit.element] = edit.value(analysis.axis_maps, masks)
        value = items
    _drop_attribute(node, attr_name)
    node.attribute.append(helper.make_attribute(attr_name, value))


def _drop_attribute(node: onnx.NodeProto, name: str) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
