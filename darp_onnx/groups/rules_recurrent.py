"""Rules for recurrent layers (LSTM, GRU, RNN): the input channels are a sink, the hidden size is frozen.

X is [seq, batch, input] (layout 0) or [batch, seq, input] (layout 1); W is [directions, gates*hidden,
input], so pruning input channels slices W's last axis, exactly as for a MatMul. Pruning hidden units
would slice W, R and B by rows and R by columns too, but the recurrence feeds every hidden unit back
into every other, so the gates at sink inputs could not make the proxy match the rewritten model:
the hidden size stays frozen.
"""

from __future__ import annotations

import onnx

from darp_onnx.groups.rules_basic import attr, unknown
from darp_onnx.groups.tracer import Layout, Tracer


def recurrent(t: Tracer, node: onnx.NodeProto) -> None:
    x, w = node.input[0], node.input[1]
    weight = t.const(w)
    if weight is None or weight.ndim != 3:
        unknown(t, node)
        return
    lay = t.layout(x)
    if lay is not None:
        if lay.axis != 2:
            t.freeze(lay.units, f"{node.op_type} '{node.name}' reads channels on another axis")
        else:
            t.bind_const(w, 2, lay, node)
    for name in node.input[1:]:
        other = t.layout(name)
        if other is not None:
            t.freeze(other.units, f"{node.op_type} '{node.name}' reads tracked channels as weights or states")
    hidden = int(attr(node, "hidden_size", 0) or weight.shape[1] // _gates(node.op_type))
    units = t.fresh_atom_frozen(hidden, f"{node.name} hidden ({hidden})",
                                f"hidden size of {node.op_type} '{node.name}' is not pruned (the recurrence "
                                "mixes hidden units)")
    for out in node.output:
        rank = t.rank(out) if out else None
        if rank:
            t.set(out, Layout(rank - 1, units))


def _gates(op_type: str) -> int:
    return {"LSTM": 4, "GRU": 3}.get(op_type, 1)
