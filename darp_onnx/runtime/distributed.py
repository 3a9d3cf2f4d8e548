"""torch.distributed for the training loops (search, recovery, fine-tune) under `torchrun`.

A run is distributed when torchrun's environment says so (WORLD_SIZE > 1). Every rank builds the same
proxy from the same model and seed; the data are sharded (each rank takes its slice of one global batch
drawn from the same seeded stream), gradients are averaged after backward, and everything with side
effects (extraction, rewrite, validation, writing, printing) happens on rank 0 while the others wait.
Outside torchrun every helper here is a no-op for one process, so callers need no branches.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from darp_onnx.errors import DarpError, first_line

T = TypeVar("T")

DEFAULT_TIMEOUT_S = float(os.environ.get("DARP_DIST_TIMEOUT_S", "600"))
EXIT_DISTRIBUTED = 3
_peer_lost = False  # a collective failed: leaving the group could hang, so exit without it


class DistributedError(DarpError):
    """Another rank failed or stopped answering (exit code 3); nothing was written."""

    exit_code = EXIT_DISTRIBUTED


def launched() -> bool:
    """True under torchrun (or any launcher setting RANK and WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: the process group's, else torchrun's RANK before the group is joined, else 0."""
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(*, device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group torchrun described (NCCL for CUDA, gloo otherwise); True when distributed.
    Idempotent; a no-op outside torchrun."""
    if not launched():
        return False
    if dist.is_initialized():
        return True
    from darp_onnx.runtime.device import cuda_usable  # onnxruntime imported only when distributed

    cuda = str(device).startswith("cuda") or (device == "auto" and cuda_usable())  # as choose_device decides
    if cuda:
        torch.cuda.set_device(local_rank())
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    except Exception as exc:  # rendezvous failures come as several exception types
        raise DistributedError(f"rank {os.environ.get('RANK')}: joining the process group failed: "
                               f"{first_line(exc)}; check MASTER_ADDR/MASTER_PORT or torchrun's --rdzv-endpoint"
                               ) from None
    # a gloo group still alive when the interpreter exits can abort the process ("terminate called without
    # an active exception", SIGABRT) after the work succeeded: leave it first, also for API callers
    atexit.register(shutdown)
    return True


def exit_process(code: int) -> NoReturn:
    """End a distributed run's process with `code`: leave the group, flush, and exit without the
    interpreter's and C++'s teardown, in which gloo's threads now and then abort the process after the
    work succeeded ("terminate called without an active exception": SIGABRT in 3 of 25 two-rank runs)."""
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shutdown() -> None:
    """Leave the process group (idempotent); skipped after a lost peer, where leaving could hang."""
    if dist.is_available() and dist.is_initialized() and not _peer_lost:
        dist.destroy_process_group()


def _collective(what: str, fn: Callable[[], T]) -> T:
    """Run a collective; a dead or stuck peer becomes one clear DistributedError."""
    try:
        return fn()
    except DistributedError:
        raise
    except Exception as exc:  # gloo/NCCL report a lost peer as RuntimeError or DistBackendError
        mark_peer_lost()
        raise DistributedError(f"rank {rank()}: {what} failed, another rank died or timed out "
                               f"({first_line(exc)}); nothing was written") from None


def barrier(what: str = "barrier", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Wait for every rank, at most `timeout_s` (gloo's monitored barrier names a rank that does not come)."""
    if not active():
        return
    if dist.get_backend() == "gloo":
        _collective(what, lambda: dist.monitored_barrier(timeout=timedelta(seconds=timeout_s)))
    else:
        _collective(what, dist.barrier)


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's slice of one global batch: every sample goes to exactly one rank."""
    return indices[rank()::world_size()] if active() else indices


def mean_tensors(tensors: Iterable[torch.Tensor | None], like: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The mean over the ranks of each tensor (None: zeros shaped as its `like`), in one flat all-reduce."""
    tensors = [t.detach() if t is not None else torch.zeros_like(ref) for t, ref in zip(tensors, like, strict=True)]
    if not active() or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    _collective("averaging gradients", lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
    flat /= world_size()
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset:offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()
    return out


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average the gradients of `params` over the ranks after backward (a missing one counts as zero)."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    for p, grad in zip(params, mean_tensors([p.grad for p in params], params), strict=True):
        p.grad = grad


def mean_scalar(value: float) -> float:
    """The mean of a float over the ranks (the reported loss of a global batch)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    _collective("averaging the loss", lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
    return float(t.item()) / world_size()


def max_int(value: int) -> int:
    """The largest of an integer over the ranks (a step count every rank must agree on)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.int64)
    _collective("agreeing on the step", lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
    return int(t.item())


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank (pickled)."""
    if not active():
        return obj
    box: list[Any] = [obj if is_main() else None]
    _collective("broadcasting from rank 0", lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def on_main(fn: Callable[[], T], what: str) -> T | None:
    """`fn()` on rank 0 (side effects: extraction, rewrite, validation, writing); the others wait for it.
    Rank 0's failure reaches every rank: rank 0 re-raises its error, the others raise DistributedError."""
    if not active():
        return fn()
    result, failure = None, None
    if is_main():
        try:
            result = fn()
        except BaseException as exc:  # re-raised below after telling the other ranks
            failure = exc
    status = broadcast(None if failure is None else
                       (getattr(failure, "exit_code", 1), f"{type(failure).__name__}: {first_line(failure)}"))
    if failure is not None:
        raise failure
    if status is not None:
        error = DistributedError(f"rank {rank()}: rank 0 failed in {what}: {status[1]}")
        error.exit_code = status[0]
        raise error
    return result


def agree_exit_code(code: int, timeout_s: float = 60.0) -> int:
    """The largest exit code of all ranks, so every rank exits alike; a peer that is gone gives
    EXIT_DISTRIBUTED (unless this rank already failed)."""
    if not active():
        return code
    t = torch.tensor([code], dtype=torch.int64)
    try:
        work = dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True)
        work.wait(timeout=timedelta(seconds=timeout_s))
    except Exception:  # a lost peer: this rank cannot learn the others' codes
        mark_peer_lost()
        return code or EXIT_DISTRIBUTED
    return int(t.item())


def synced_batch_norm(y: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor, *, momentum: float, eps: float) -> torch.Tensor:
    """Training-mode batch normalisation with the statistics of the global batch (SyncBatchNorm's
    semantics): per-channel sums are all-reduced with autograd, so the ranks together compute what one
    process computes on the whole batch, gradients included."""
    dims = [0, *range(2, y.dim())]
    channels = y.shape[1]
    local = torch.cat([y.sum(dims), (y * y).sum(dims), y.new_full((1,), y.numel() / channels)])
    total = _collective("synchronising BatchNorm statistics", lambda: _SumOverRanks.apply(local))
    count = total[-1]
    mean = total[:channels] / count
    var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0.0)
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * count / (count - 1).clamp_min(1.0))
    shape = [1, -1] + [1] * (y.dim() - 2)
    return (y - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps) * weight.view(shape) + bias.view(shape)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with autograd: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def mark_peer_lost() -> None:
    """A peer is gone: `shutdown` (and the exit hook) will not try to leave the group."""
    global _peer_lost
    _peer_lost = True
