"""LSTM and GRU as explicit per-time-step loops that follow the ONNX equations.

The ONNX weight layout maps directly onto the loop (no repacking into torch.nn.LSTM's gate order):
LSTM W/R hold gates [i, o, f, c], GRU W/R hold [z, r, h]; B is [Wb, Rb] concatenated. Supported:
directions forward/reverse/bidirectional, layout 0 and 1, optional B, initial_h/initial_c, LSTM
peepholes P, GRU linear_before_reset 0/1, the default activations only, and sequence_lens only when
every length equals the sequence length.
"""

from __future__ import annotations

import torch
from torch import nn

from darp_onnx.load.attributes import node_attributes
from darp_onnx.proxy.ops.common import result_for, to_int_list
from darp_onnx.proxy.registry import add_converter

__all__ = ["GRU", "LSTM"]

_DEFAULT_ACTIVATIONS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}


class _Recurrent(nn.Module):
    def __init__(self, direction: str, layout: int, n_outputs: int) -> None:
        super().__init__()
        self.direction = direction
        self.layout = layout
        self.n_outputs = n_outputs
        self.num_directions = 2 if direction == "bidirectional" else 1

    def _reverse(self, d: int) -> bool:
        return self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)

    def _prepare(self, x, seq_lens, states):
        if self.layout == 1:  # [batch, seq, ...] -> [seq, batch, ...]; states [batch, dirs, H]
            x = x.transpose(0, 1)
            states = [s.transpose(0, 1) if s is not None else None for s in states]
        if seq_lens is not None and any(n != x.shape[0] for n in to_int_list(seq_lens)):
            raise NotImplementedError(
                f"{type(self).__name__}: sequence_lens shorter than the sequence length ({x.shape[0]}) "
                "are not supported"
            )
        return x, states

    def _outputs(self, ys: list[torch.Tensor], finals: list[list[torch.Tensor]]):
        y = torch.stack(ys, dim=1)  # [seq, dirs, batch, H]
        states = [torch.stack(f, dim=0) for f in finals]  # [dirs, batch, H]
        if self.layout == 1:
            y = y.permute(2, 0, 1, 3)
            states = [s.transpose(0, 1) for s in states]
        out = (y, *states)
        return out[0] if self.n_outputs == 1 else out[: self.n_outputs]

    def _steps(self, seq: int, d: int) -> range:
        return range(seq - 1, -1, -1) if self._reverse(d) else range(seq)

    def extra_repr(self) -> str:
        return f"direction={self.direction}, layout={self.layout}"


class LSTM(_Recurrent):
    def forward(self, x, w, r, b=None, seq_lens=None, h0=None, c0=None, p=None):
        x, (h0, c0) = self._prepare(x, seq_lens, [h0, c0])
        seq, batch = x.shape[0], x.shape[1]
        hidden = r.shape[-1]
        ys, h_last, c_last = [], [], []
        for d in range(self.num_directions):
            proj = x @ w[d].t()  # [seq, batch, 4H]
            if b is not None:
                proj = proj + b[d, : 4 * hidden] + b[d, 4 * hidden :]
            h = h0[d] if h0 is not None else x.new_zeros(batch, hidden)
            c = c0[d] if c0 is not None else x.new_zeros(batch, hidden)
            pi, po, pf = p[d].chunk(3) if p is not None else (None, None, None)
            out: list[torch.Tensor] = [None] * seq  # type: ignore[list-item]
            for t in self._steps(seq, d):
                gi, go, gf, gc = (proj[t] + h @ r[d].t()).chunk(4, dim=-1)
                if p is not None:
                    gi = gi + pi * c
                    gf = gf + pf * c
                c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gc)
                if p is not None:
                    go = go + po * c
                h = torch.sigmoid(go) * torch.tanh(c)
                out[t] = h
            ys.append(torch.stack(out, dim=0))
            h_last.append(h)
            c_last.append(c)
        return self._outputs(ys, [h_last, c_last])


class GRU(_Recurrent):
    def __init__(self, direction: str, layout: int, n_outputs: int, linear_before_reset: bool) -> None:
        super().__init__(direction, layout, n_outputs)
        self.linear_before_reset = linear_before_reset

    def forward(self, x, w, r, b=None, seq_lens=None, h0=None):
        x, (h0,) = self._prepare(x, seq_lens, [h0])
        seq, batch = x.shape[0], x.shape[1]
        hidden = r.shape[-1]
        ys, h_last = [], []
        for d in range(self.num_directions):
            proj = x @ w[d].t()  # [seq, batch, 3H]
            rz, rr, rh = r[d].chunk(3, dim=0)  # each [H, H]
            if b is not None:
                wb, rb = b[d, : 3 * hidden], b[d, 3 * hidden :]
                rbz, rbr, rbh = rb.chunk(3)
                # Rbz and Rbr always add to the gate pre-activations; Rbh depends on linear_before_reset.
                proj = proj + wb + torch.cat([rbz, rbr, torch.zeros_like(rbh)])
            else:
                rbh = None
            h = h0[d] if h0 is not None else x.new_zeros(batch, hidden)
            rzr = torch.cat([rz, rr], dim=0)
            out: list[torch.Tensor] = [None] * seq  # type: ignore[list-item]
            for t in self._steps(seq, d):
                xz, xr, xh = proj[t].chunk(3, dim=-1)
                hz, hr = (h @ rzr.t()).chunk(2, dim=-1)
                z = torch.sigmoid(xz + hz)
                g = torch.sigmoid(xr + hr)
                if self.linear_before_reset:
                    hh = h @ rh.t()
                    if rbh is not None:
                        hh = hh + rbh
                    cand = torch.tanh(xh + g * hh)
                else:
                    hh = (g * h) @ rh.t()
                    if rbh is not None:
                        hh = hh + rbh
                    cand = torch.tanh(xh + hh)
                h = (1 - z) * cand + z * h
                out[t] = h
            ys.append(torch.stack(out, dim=0))
            h_last.append(h)
        return self._outputs(ys, [h_last])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, linear_before_reset={self.linear_before_reset}"


def _check_common(node, ctx, attrs) -> tuple[str, int]:
    op = node.op_type
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise NotImplementedError(f"{op} direction '{direction}' is not supported")
    dirs = 2 if direction == "bidirectional" else 1
    acts = attrs.get("activations")
    if acts is not None and [a.lower() for a in acts] != _DEFAULT_ACTIVATIONS[op] * dirs:
        raise NotImplementedError(f"{op} activations {list(acts)} are not supported (only the defaults)")
    if "clip" in attrs:
        raise NotImplementedError(f"{op} clip={attrs['clip']} is not supported")
    if attrs.get("output_sequence", 0):
        raise NotImplementedError(f"{op} output_sequence (opset 1) is not supported")
    layout = int(attrs.get("layout", 0))
    # sequence_lens, when known before run time, is checked now; run-time values are checked in forward.
    lens = ctx.constant(node.input[4]) if len(node.input) > 4 else None
    x_shape = ctx.shape(node.input[0])
    seq = x_shape[1 if layout else 0] if x_shape else None
    if lens is not None and isinstance(seq, int) and any(int(n) != seq for n in lens.reshape(-1)):
        raise NotImplementedError(f"{op} sequence_lens shorter than the sequence length are not supported")
    return direction, layout


@add_converter("LSTM")
def convert_lstm(node, ctx):
    attrs = node_attributes(node)
    direction, layout = _check_common(node, ctx, attrs)
    if attrs.get("input_forget", 0):
        raise NotImplementedError(f"LSTM input_forget={attrs['input_forget']} is not supported")
    return result_for(node, LSTM(direction, layout, len(node.output)), static_inputs=[4])


@add_converter("GRU")
def convert_gru(node, ctx):
    attrs = node_attributes(node)
    direction, layout = _check_common(node, ctx, attrs)
    lbr = bool(attrs.get("linear_before_reset", 0))
    return result_for(node, GRU(direction, layout, len(node.output), lbr), static_inputs=[4])
