"""torch.distributed on CPU (gloo, 2 processes): the same masks as one process, only rank 0 writes,
a killed rank ends the run with a clear error and nothing written, every rank exits alike."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from darp_onnx.cli.launch import spawn, without_nproc
from darp_onnx.runtime.distributed import EXIT_DISTRIBUTED
from tests.distributed.worker import SETTINGS

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch built without torch.distributed/gloo")

ROOT = Path(__file__).resolve().parents[2]
RESNET = ROOT / "sample_models" / "resnet.onnx"
WORKER = Path(__file__).with_name("worker.py")
ENV = {"DARP_DIST_TIMEOUT_S": "60", "PYTHONPATH": str(ROOT)}


def run_ranks(out: Path, batch: int, *kill: int, grace_s: float = 60.0) -> int:
    return spawn(2, [sys.executable, str(WORKER), str(RESNET), str(out), str(batch), *map(str, kill)],
                 env=ENV, grace_s=grace_s)


def test_two_processes_choose_the_masks_of_one_and_only_rank_0_writes(tmp_path):
    from darp_onnx.api import prune

    assert run_ranks(tmp_path, 4) == 0  # 2 ranks x 4 samples: the global batch of 8
    single = prune(RESNET, batch_size=8, write=False, **SETTINGS)
    masks = np.load(tmp_path / "masks.npz")
    assert sorted(masks.files) == sorted(f"mask{g}" for g in single.masks)
    for g, mask in single.masks.items():
        np.testing.assert_array_equal(masks[f"mask{g}"], mask, err_msg=f"group {g}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks.npz", "pruned.onnx", "saved-by-rank-0"]


def test_a_killed_rank_ends_the_run_with_a_clear_error_and_nothing_written(tmp_path, capfd):
    start = time.monotonic()
    code = run_ranks(tmp_path, 4, 1, 3)  # rank 1 dies by SIGKILL at search step 3
    assert time.monotonic() - start < 120
    assert code == EXIT_DISTRIBUTED
    err = capfd.readouterr().err
    assert "another rank died or timed out" in err
    assert "rank 1 was ended by SIGKILL" in err  # the launcher says which rank a signal ended
    assert list(tmp_path.iterdir()) == []


def test_the_launcher_drops_nproc_and_every_rank_exits_alike(tmp_path):
    assert without_nproc(["prune", "m.onnx", "--nproc", "2", "--steps=3", "--nproc=4"]) == ["prune", "m.onnx",
                                                                                         "--steps=3"]
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"x")  # both ranks refuse to overwrite: exit 1 on each, 1 for the launch
    code = spawn(2, [sys.executable, "-m", "darp_onnx.cli", "prune", str(RESNET), "-o", str(taken)], env=ENV)
    assert code == 1
    assert taken.read_bytes() == b"x"
