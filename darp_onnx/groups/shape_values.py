"""Shape sub-graphs followed element by element (Shape -> Gather/Slice -> Unsqueeze -> Concat -> Reshape).

Exporters compute Reshape/Expand/Resize targets at run time from `Shape`. Every small integer vector
derived from shapes and constants gets one `Elem` per element: a product `coef * symbols * refs`, where
a ref is the run-time size of a tracked channel axis (it shrinks when channels are pruned), a symbol a
fixed dim known only by name, and a literal (no symbols, no refs) remembers where it can be edited.
A consumer that understands shape vectors (the Reshape, Expand, Resize, ConstantOfShape rules) checks
that each element is right after pruning: the channel element either reads the pruned axis itself or
is an editable literal, every other element stays constant. Anything else that reads a shrinking
size freezes the channels it reads, with a reason.

We follow the sub-graphs rather than constant-folding them (onnx-graphsurgeon `fold_constants`): folding
needs concrete dims, so it would bake the spatial sizes and the batch into the analysed graph, and
every edit would have to be mapped back onto the unfolded graph that is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
import onnx

from darp_onnx.groups.rules_basic import attr
from darp_onnx.groups.tracer import Layout, Tracer

MAX_LENGTH = 16  # longer integer tensors are data, not shapes
FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass(frozen=True)
class Ref:
    """The run-time size of axis `axis` of `tensor`, whose channels the analysis tracks."""

    tensor: str
    axis: int
    layout: Layout = field(compare=False, hash=False)


@dataclass(frozen=True)
class Elem:
    """One element: `coef * prod(symbols) * prod(refs)`; coef None when it is no such product (then
    `refs` lists every tracked size it depends on). `source` (node, input, element) is where a
    literal can be rewritten."""

    coef: Fraction | None
    symbols: tuple[str, ...] = ()
    refs: tuple[Ref, ...] = ()
    source: tuple[str, int, int] | None = None
    now: Fraction | None = field(default=None, compare=False)  # its value in the unpruned model, if no symbol

    @property
    def literal(self) -> bool:
        return self.coef is not None and not self.symbols and not self.refs

    @property
    def current(self) -> Fraction | None:
        """The value before pruning, when no symbolic dim enters it."""
        return self.coef if self.literal else self.now

    @property
    def varies(self) -> bool:
        return bool(self.refs)

    def single_ref(self) -> Ref | None:
        """The one tracked size this element is proportional to, if it is."""
        return self.refs[0] if self.coef is not None and len(self.refs) == 1 else None

    def unsourced(self) -> Elem:
        return Elem(self.coef, self.symbols, self.refs, now=self.now)


def opaque(*elems: Elem, now: Fraction | None = None) -> Elem:
    return Elem(None, refs=tuple(sorted({r for e in elems for r in e.refs}, key=_ref_key)), now=now)


def _arith(op: str, x: Fraction | None, y: Fraction | None, integer: bool) -> Fraction | None:
    """`x op y` as ONNX computes it (integer Div truncates); None when unknown or undefined."""
    if x is None or y is None:
        return None
    if op in ("Add", "Sub", "Mul"):
        return x + y if op == "Add" else x - y if op == "Sub" else x * y
    if op in ("Max", "Min"):
        return max(x, y) if op == "Max" else min(x, y)
    if y == 0:
        return None
    if op == "Div":
        return Fraction(int(x / y)) if integer else x / y
    return x % y if op == "Mod" else None


def _ref_key(ref: Ref) -> tuple[str, int]:
    return ref.tensor, ref.axis


def _times(a: Elem, b: Elem) -> Elem:
    now = _arith("Mul", a.current, b.current, False)
    if a.coef is None or b.coef is None:
        return opaque(a, b, now=now)
    refs = tuple(sorted(a.refs + b.refs, key=_ref_key))
    return Elem(a.coef * b.coef, tuple(sorted(a.symbols + b.symbols)), refs, now=now)


def _binary(op: str, a: Elem, b: Elem, integer: bool) -> Elem:
    if op == "Mul":
        return _times(a, b)
    now = _arith(op, a.current, b.current, integer)
    if a.literal and b.literal and now is not None:
        return Elem(now)
    if op == "Div" and b.literal and b.coef != 0 and not a.refs and a.coef is not None and not integer:
        return Elem(a.coef / b.coef, a.symbols, now=now)
    return opaque(a, b, now=now)  # without refs: a fixed value we do not track by name


# -- reading values --------------------------------------------------------------------------------
def value_of(t: Tracer, name: str, reader: tuple[str, int] | None = None) -> list[Elem] | None:
    """Elements of `name` (a shape vector or a small constant); literals of a constant read directly
    get `reader` (node, input) as their source."""
    if not name:
        return None
    if name in t.shape_values:
        return t.shape_values[name]
    value = t.const(name)
    if value is None or value.size > MAX_LENGTH or value.ndim > 1 or value.dtype.kind not in "iuf":
        return None
    flat = np.asarray(value).reshape(-1)
    if value.dtype.kind == "f" and not np.isfinite(flat).all():
        return None
    return [Elem(Fraction(v.item()) if value.dtype.kind != "f" else Fraction(float(v)),
                 source=(reader[0], reader[1], k) if reader else None) for k, v in enumerate(flat)]


def varying_refs(elems: list[Elem] | None) -> list[Ref]:
    return sorted({r for e in elems or [] for r in e.refs}, key=_ref_key)


def freeze_refs(t: Tracer, elems: list[Elem] | None, reason: str) -> None:
    for ref in varying_refs(elems):
        t.freeze(ref.layout.units, reason)


# -- propagation through the ops of shape sub-graphs -----------------------------------------------
def _shape(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    shape = t.shape(node.input[0])
    if shape is None:
        return None
    rank = len(shape)
    start = int(attr(node, "start", 0))
    end = attr(node, "end")
    start = max(0, start + rank if start < 0 else start)
    end = rank if end is None else min(rank, int(end) + rank if int(end) < 0 else int(end))
    lay = t.layout(node.input[0])
    elems = [_dim(shape[i], node.input[0], i, lay) for i in range(rank)]
    if node.op_type == "Size":
        product = Elem(Fraction(1))
        for e in elems:
            product = _times(product, e)
        return [product]
    return elems[start:end]


def _dim(dim, tensor: str, axis: int, lay: Layout | None) -> Elem:
    if lay is not None and lay.axis == axis:
        return Elem(Fraction(1), refs=(Ref(tensor, axis, lay),), now=Fraction(lay.size))
    if isinstance(dim, int):
        return Elem(Fraction(dim))
    return Elem(Fraction(1), (dim,)) if isinstance(dim, str) else Elem(None)


def _same(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    """Cast, Identity, Unsqueeze, Squeeze, Reshape, Flatten: the elements are unchanged."""
    return ins[0]


def _concat(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    if any(v is None for v in ins):
        return None
    return [e for v in ins for e in v]


def _gather(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    data, idx = ins[0], t.const(node.input[1])
    if data is None or idx is None or int(attr(node, "axis", 0)) != 0:
        return None
    n = len(data)
    picks = [int(i) + n if int(i) < 0 else int(i) for i in np.ravel(idx)]
    return [data[i] for i in picks] if all(0 <= i < n for i in picks) else None


def _slice(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    data = ins[0]
    if data is None:
        return None
    if t.opset < 10:
        starts, ends, axes, steps = attr(node, "starts"), attr(node, "ends"), attr(node, "axes"), None
    else:
        params = [t.const(n) if n else None for n in list(node.input[1:5]) + [""] * (5 - len(node.input))]
        if any(p is None and i < len(node.input) - 1 and node.input[i + 1] for i, p in enumerate(params)):
            return None
        starts, ends, axes, steps = params
    if starts is None or ends is None or (axes is not None and [int(a) for a in np.ravel(axes)] not in ([0], [-1])):
        return None
    step = 1 if steps is None else int(np.ravel(steps)[0])
    start, end = int(np.ravel(starts)[0]), int(np.ravel(ends)[0])
    if step == 0:
        return None
    return data[slice(*slice(start, end, step).indices(len(data)))]


def _elementwise(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    if any(v is None for v in ins) or not ins:
        return None
    n = max(len(v) for v in ins)
    if any(len(v) not in (1, n) for v in ins):
        return None
    rows = [[v[0] if len(v) == 1 else v[i] for v in ins] for i in range(n)]
    op = node.op_type
    if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Mod") and len(ins) == 2:
        integer = _is_integer(t, node.input[0])
        return [_binary(op, a, b, integer) for a, b in rows]
    if op in ("Floor", "Ceil", "Round", "Abs"):
        return [replace(e.unsourced() if e.coef is None or e.coef.denominator == 1 and e.coef >= 0 else opaque(e),
                        now=_unary(op, e.current)) for e in ins[0]]
    if op in ("Equal", "Less", "Greater") and len(ins) == 2:
        return [Elem(Fraction(int(_compare(op, a.coef, b.coef)))) if a.literal and b.literal else opaque(a, b)
                for a, b in rows]
    if op == "Where" and len(ins) == 3:  # a literal condition picks elements (they keep their source)
        return [(x if c.coef else y) if c.literal else opaque(c, x, y) for c, x, y in rows]
    if op == "Neg":
        return [Elem(-e.coef, e.symbols, e.refs, now=None if e.now is None else -e.now) if e.coef is not None
                else replace(e, now=None if e.now is None else -e.now) for e in ins[0]]
    return [opaque(*row) for row in rows]


def _compare(op: str, x: Fraction, y: Fraction) -> bool:
    return x == y if op == "Equal" else x < y if op == "Less" else x > y


def _constant_of_shape(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    """A short vector filled with one value (TorchScript's `expand(-1, H, ...)` builds its shape with it)."""
    shape = ins[0]
    if shape is None or len(shape) != 1 or not shape[0].literal or not 0 <= shape[0].coef <= MAX_LENGTH:
        return None
    value = attr(node, "value")
    fill = Fraction(0) if value is None else Fraction(np.ravel(value)[0].item())
    return [Elem(fill) for _ in range(int(shape[0].coef))]


def _unary(op: str, x: Fraction | None) -> Fraction | None:
    if x is None:
        return None
    if op == "Abs":
        return abs(x)
    return Fraction({"Floor": math.floor, "Ceil": math.ceil, "Round": round}[op](x))


def _is_integer(t: Tracer, name: str) -> bool:
    value = t.const(name)
    if value is not None:
        return value.dtype.kind in "iu"
    return name in t.shape_values and name not in t.float_values


def _reduce_prod(t: Tracer, node: onnx.NodeProto, ins) -> list[Elem] | None:
    if ins[0] is None:
        return None
    product = Elem(Fraction(1))
    for e in ins[0]:
        product = _times(product, e)
    return [product]


PROPAGATE = {
    "Shape": _shape,
    "Size": _shape,
    **dict.fromkeys(("Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten"), _same),
    "Concat": _concat,
    "Gather": _gather,
    "Slice": _slice,
    "ReduceProd": _reduce_prod,
    "ConstantOfShape": _constant_of_shape,
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Max", "Min", "Mod", "Floor", "Ceil", "Round", "Abs", "Neg",
                     "Equal", "Less", "Greater", "Where", "Not", "Sqrt"), _elementwise),
}
# Only these ops keep a literal where it can be rewritten.
_EDITABLE = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Concat", "Gather", "Slice",
             "Where"}
# Shape inputs the channel rules read as shape vectors (any other read of a shrinking size freezes it).
CONSUMERS = {"Reshape": {1}, "Expand": {1}, "Resize": {3}, "ConstantOfShape": {0}, "Tile": {1}, "Slice": {1, 2}}


def visit(t: Tracer, node: onnx.NodeProto) -> None:
    """Propagate shape vectors through `node`, or freeze the shrinking sizes it reads blindly."""
    if node.domain in ("", "ai.onnx") and _propagate(t, node):
        return
    handled = CONSUMERS.get(node.op_type, set()) if node.domain in ("", "ai.onnx") else set()
    _freeze_reads(t, node, handled)


def _propagate(t: Tracer, node: onnx.NodeProto) -> bool:
    rule = PROPAGATE.get(node.op_type)
    if rule is None or not node.output or _big_output(t, node.output[0]):
        return False
    editable = node.op_type in _EDITABLE
    ins = [value_of(t, n, (node.name, i) if editable else None) for i, n in enumerate(node.input)]
    if node.op_type not in ("Shape", "Size"):
        data = ins[:1] if node.op_type in ("Gather", "Slice", "Reshape") else ins
        if not data or any(v is None for v in data):
            return False
    out = rule(t, node, ins)
    if out is None or len(out) > MAX_LENGTH:
        return False
    t.shape_values[node.output[0]] = out if editable else [_no_source(e) for e in out]
    if node.op_type == "Cast":
        if int(attr(node, "to", 0)) in FLOAT_TYPES:
            t.float_values.add(node.output[0])
    elif any(n in t.float_values for n in node.input):
        t.float_values.add(node.output[0])
    return True


def _no_source(e: Elem) -> Elem:
    return e.unsourced() if e.source is not None else e


def _big_output(t: Tracer, name: str) -> bool:
    shape = t.shape(name)
    return shape is not None and (len(shape) > 1 or (len(shape) == 1 and isinstance(shape[0], int)
                                                      and shape[0] > MAX_LENGTH))


def _freeze_reads(t: Tracer, node: onnx.NodeProto, handled: set[int]) -> None:
    for i, name in enumerate(node.input):
        if i not in handled and name in t.shape_values:
            reason = (f"node '{node.name}' ({node.op_type}) uses a channel count read at run time "
                      f"(its input '{name}')")
            freeze_refs(t, t.shape_values[name], reason)


# -- what consumers of shape vectors require -------------------------------------------------------
def follows_channels(t: Tracer, node: onnx.NodeProto, e: Elem, new: Layout, key: tuple[str, int]) -> bool:
    """Make element `e` (now `new.size`) equal the kept size of `new` after pruning: it reads a size
    coupled with `new`, or it is an editable literal. False when neither holds."""
    ref = e.single_ref()
    if ref is not None:
        return t.couple(Layout(new.axis, ref.layout.units, new.repeat, new.tile), new, node)
    if e.literal and e.source is not None and e.coef == new.size:
        t.edit_literal(e.source, key, new, node)
        return True
    return False


def stays_fixed(t: Tracer, e: Elem) -> bool:
    """Element `e` must keep its value: true unless it reads a shrinking size (literals get pinned)."""
    if e.varies:
        return False
    if e.literal and e.source is not None:
        t.pin_literal(e.source)
    return True


def created_layout(t: Tracer, elems: list[Elem], offset: int, data_dim=lambda pos: 1) -> tuple[Layout | None, bool]:
    """The layout a broadcast (Expand, ConstantOfShape) creates when one element is exactly a tracked
    size and the data has size 1 there (`data_dim(output position)`); (None, True) when nothing
    varies, (None, False) when it cannot be followed. `offset` is the output position of element 0."""
    varying = [(j, e) for j, e in enumerate(elems) if e.varies]
    if not varying:
        return None, True  # nothing pinned: a filled tensor may still be bound later (const_views)
    for e in elems:
        if not e.varies:
            stays_fixed(t, e)
    if len(varying) != 1:
        return None, False
    j, e = varying[0]
    ref = e.single_ref()
    pos = j + offset
    if ref is None or e.coef != 1 or e.symbols or data_dim(pos) != 1:
        return None, False
    return ref.layout.moved(pos), True
