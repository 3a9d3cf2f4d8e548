"""The proxy against the ONNX backend node test suite: one row per run form, as in the README.

    python -m benchmarks.conformance            # the table
    python -m benchmarks.conformance --details  # plus every case that did not pass, with why

A case is claimed when the registry has a converter for every node at its opset; claimed cases must
pass or be refused with our error, unclaimed ones must be refused (see tests/conformance/harness.py).
Where onnxruntime differs from the ONNX reference the proxy follows onnxruntime (its own column).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import onnx
import torch

from tests.conformance.harness import (
    CRASH,
    MISMATCH,
    MODES,
    PASS,
    PASS_ORT,
    REFUSED,
    is_claimed,
    node_cases,
    run_case,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="list every case that did not pass")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny cases: one thread is several times faster on a busy machine
    start = time.perf_counter()
    cases = node_cases()
    loaded = time.perf_counter() - start
    claimed = {name for name, case in cases.items() if is_claimed(case.model)}
    rows, details = [], []
    for mode in MODES:
        counts: Counter[str] = Counter()
        for name, case in cases.items():
            outcome = run_case(case, mode)
            kind = "claimed" if name in claimed else "unclaimed"
            counts[kind, outcome.status] += 1
            if outcome.status not in (PASS, PASS_ORT) and (kind == "claimed" or outcome.status != REFUSED):
                details.append(f"{mode:12} {kind:9} {outcome.status:8} {name}: {outcome.detail}")
        rows.append((mode, counts))
    elapsed = time.perf_counter() - start
    print(f"ONNX backend node cases (onnx {onnx.__version__}): {len(cases)}, claimed by the proxy: {len(claimed)}")
    print()
    print("| inputs fed as | claimed | passed | equal to onnxruntime, not the reference | refused (our error) "
          "| mismatched | crashed | unclaimed: refused | unclaimed: other |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, counts in rows:
        n_claimed = sum(v for (kind, _), v in counts.items() if kind == "claimed")
        passed = counts["claimed", PASS]
        print(f"| {mode} | {n_claimed} | {passed} ({100 * passed / max(n_claimed, 1):.1f}%) "
              f"| {counts['claimed', PASS_ORT]} "
              f"| {counts['claimed', REFUSED]} | {counts['claimed', MISMATCH]} | {counts['claimed', CRASH]} "
              f"| {counts['unclaimed', REFUSED]} "
              f"| {sum(v for (kind, s), v in counts.items() if kind == 'unclaimed' and s != REFUSED)} |")
    print()
    print(f"({elapsed:.0f} s, of which {loaded:.0f} s building the cases)")
    if args.details:
        print()
        print("\n".join(sorted(details)))


if __name__ == "__main__":
    main()
