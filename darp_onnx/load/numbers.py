"""Option values checked before any work: finite, in range, whole where a count is meant.

`--target-flops nan` once wrote an unpruned model with exit 0 and `--steps -5` ran; every number a
command takes goes through `check_number` first (the prune settings in `workflows.config`'s sections).
Errors are `OptionError`s naming the Python parameter; the CLI spells it as its flag.
"""

from __future__ import annotations

import math
from numbers import Real

from darp_onnx.errors import OptionError

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds


def check_number(value: object, parameter: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, whole: bool = False, what: str = "") -> None:
    """`value` is a finite real in [low, high] (or (low, high] with `low_open`), whole with `whole`;
    `None` passes (an option not given). `what` says what the number means, for the message."""
    if value is None:
        return
    hint = f" ({what})" if what else ""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise OptionError(parameter, f"{{option}} {value}: give a finite number{hint}")
    if whole and float(value) != int(value):
        raise OptionError(parameter, f"{{option}} {value}: give a whole number{hint}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        span = f"in {left}{_fmt(low)}, {_fmt(high)}]" if high is not None else (
            f"> {_fmt(low)}" if low_open else f">= {_fmt(low)}")
        raise OptionError(parameter, f"{{option}} {value}: must be {span}{hint}")


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def check_seed(seed: int, parameter: str = "seed") -> None:
    check_number(seed, parameter, low=0, high=MAX_SEED, whole=True)


def check_pair(pair, parameter: str) -> None:
    """A START:END temperature pair: two finite, positive numbers."""
    if len(pair) != 2:
        raise OptionError(parameter, f"{{option}} {pair}: give two positive temperatures (START, END)")
    for value in pair:
        check_number(value, parameter, low=0, low_open=True, what="temperatures START:END, e.g. 1.0:0.1")


def check_finetune_numbers(*, steps, epochs, lr: float, batch_size: int, new_head, val_fraction: float, patience: int,
                           eval_every, seed: int) -> None:
    """Every number `finetune` takes, before the model is read."""
    check_number(steps, "steps", low=0, whole=True)
    check_number(epochs, "epochs", low=0, whole=True)
    check_number(lr, "lr", low=0, low_open=True, what="a learning rate such as 1e-3")
    check_number(batch_size, "batch_size", low=1, whole=True)
    check_number(new_head, "new_head", low=2, whole=True, what="classes of the new head")
    check_number(val_fraction, "val_fraction", low=0, high=0.99)
    check_number(patience, "patience", low=1, whole=True)
    check_number(eval_every, "eval_every", low=1, whole=True)
    check_seed(seed)


def check_validate_numbers(*, max_drift, atol, rtol, latency_runs: int, samples: int, seed: int) -> None:
    """Every number `validate` takes, before the models are read."""
    for parameter, value in (("max_drift", max_drift), ("atol", atol), ("rtol", rtol)):
        check_number(value, parameter, low=0)
    check_number(latency_runs, "latency_runs", low=0, whole=True, what="0: no timing")
    check_number(samples, "samples", low=1, whole=True)
    check_seed(seed)
