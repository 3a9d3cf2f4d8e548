"""One rank of a distributed prune, for the tests: `python worker.py MODEL OUT_DIR BATCH [KILL_RANK KILL_STEP]`.

Rank 0 saves the masks and scores to OUT_DIR/masks.npz; every call of the writer is logged per rank
(OUT_DIR/saved-by-rank-R), so a test can see who wrote; KILL_RANK dies by SIGKILL at search step KILL_STEP.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

import darp_onnx.workflows.prune as workflow
from darp_onnx.errors import DarpError
from darp_onnx.runtime import distributed

SETTINGS = {"search_steps": 6, "finetune_steps": 2, "synthetic_samples": 16, "latency_runs": 1,
            "channel_multiple": 1, "seed": 3, "max_drift": "off"}  # 6 + 2 steps test the ranks, not the fit


def main() -> int:
    model, out_dir, batch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    kill_rank, kill_step = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (-1, -1)
    rank = distributed.rank()
    original_save = workflow.write_prune_outputs

    def logged_save(*args, **kwargs):
        (out_dir / f"saved-by-rank-{rank}").touch()
        return original_save(*args, **kwargs)

    def progress(stage: str, info: dict) -> None:
        if rank == kill_rank and stage == "search" and info.get("step") == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    workflow.write_prune_outputs = logged_save
    code = 0
    try:
        result = workflow.prune(model, output=out_dir / "pruned.onnx", batch_size=batch, progress=progress,
                                **SETTINGS)
        if result is not None:
            np.savez(out_dir / "masks.npz", **{f"mask{g}": m for g, m in result.masks.items()})
    except DarpError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    return distributed.agree_exit_code(code)


if __name__ == "__main__":
    distributed.exit_process(main())  # as the CLI ends a distributed run
