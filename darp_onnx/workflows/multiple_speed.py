"""`--channel-multiple auto`: a finer multiple is kept only where it does not cost the speed it was for.

'auto' starts at the kernel block (8 or 16 channels) and halves it while the widths rounded to it land
far under the budget (`prune._extract_auto`), because a coarse rounding that keeps 59% of the MACs when
70% was asked costs accuracy. A finer multiple can cost speed instead: tf2onnx's BlazeFace at 70% went to
multiples of 2, its 18-channel depthwise layers left onnxruntime's blocked kernels, and the pruned model
ran slower than the original (8.6 -> 11.0 ms), while multiples of 8 gave 59% MACs at 2.4x the speed.
So where 'auto' went finer, the candidates are timed against the original on onnxruntime; the finer one
stays unless it is slow for its MACs (speedup x MACs ratio under GOOD_SPEED_PER_MAC), and then the one
closest to the budget among those fast enough for their MACs is kept; with none fast enough, or a model
that runs under MIN_TIMED_MS (per-op overhead, not MACs, sets its time: silero's VADs run in 0.1 ms), the
budget's choice stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GOOD_SPEED_PER_MAC = 0.8  # speedup x MACs kept: what a rewrite that removes MACs should reach (issue 10)
MIN_TIMED_MS = 1.0  # faster originals are not judged by speed per MAC


@dataclass(frozen=True)
class TimedCandidate:
    multiple: int
    macs_ratio: float  # MACs kept / the original's
    ms: float  # onnxruntime latency of the rewritten candidate


def speed_per_mac(candidate: TimedCandidate, original_ms: float) -> float:
    return original_ms / candidate.ms * candidate.macs_ratio


def choose_for_speed(candidates: Sequence[TimedCandidate], original_ms: float, preferred: int) -> TimedCandidate:
    """The candidate to keep: `preferred` (the multiple chosen for the budget) when it is fast enough for its
    MACs, or when no candidate is, or when the original is too fast to judge; else the one with the most
    MACs among those that are fast enough."""
    first = next(c for c in candidates if c.multiple == preferred)
    if original_ms < MIN_TIMED_MS or speed_per_mac(first, original_ms) >= GOOD_SPEED_PER_MAC:
        return first
    fast = [c for c in candidates if speed_per_mac(c, original_ms) >= GOOD_SPEED_PER_MAC]
    return max(fast, key=lambda c: (c.macs_ratio, c.multiple)) if fast else first


def speed_note(kept: TimedCandidate, preferred: TimedCandidate, original_ms: float) -> str:
    return (f"channel multiple 'auto': widths at multiples of {preferred.multiple} ({preferred.macs_ratio:.1%} MACs) "
            f"ran {preferred.ms:.2f} ms against the original's {original_ms:.2f}; kept multiples of "
            f"{kept.multiple} ({kept.macs_ratio:.1%} MACs, {kept.ms:.2f} ms)")
