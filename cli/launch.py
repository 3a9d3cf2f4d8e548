"""`--nproc N`: run the same command in N processes on this machine, as torchrun would (one node).

Each child gets torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and joins
the process group itself (see `runtime.distributed`). When one child fails, the others notice at their
next collective and exit; any still running `grace_s` later are terminated, so the launch always ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from darp_onnx.runtime.distributed import EXIT_DISTRIBUTED


def without_nproc(argv: list[str]) -> list[str]:
    """`argv` less `--nproc N` / `--nproc=N`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(nproc: int, command: list[str], *, grace_s: float = 60.0, env: dict[str, str] | None = None) -> int:
    """Run `command` in `nproc` ranks; the largest exit code (EXIT_DISTRIBUTED for a rank killed by a signal)."""
    base = {**os.environ, **(env or {}), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    # as torchrun: N processes each with every core's worth of threads would oversubscribe the CPU
    base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    children = [subprocess.Popen(command, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)})
                for r in range(nproc)]
    failed_at = None
    while any(c.poll() is None for c in children):
        if failed_at is None and any(c.returncode not in (None, 0) for c in children):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for c in children:
                if c.poll() is None:
                    c.terminate()
        time.sleep(0.1)
    for r, c in enumerate(children):
        if c.returncode < 0:  # say which rank a signal ended (out of memory, a crash), not only the exit code
            print(f"darp-onnx: rank {r} was ended by {_signal_name(-c.returncode)}", file=sys.stderr, flush=True)
    return max(c.returncode if c.returncode >= 0 else EXIT_DISTRIBUTED for c in children)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def launch_local(nproc: int, argv: list[str] | None = None) -> int:
    """`darp-onnx ARGV` (less --nproc) in `nproc` processes; the exit code is the run's."""
    args = without_nproc(list(sys.argv[1:] if argv is None else argv))
    return spawn(nproc, [sys.executable, "-m", "darp_onnx.cli", *args])
