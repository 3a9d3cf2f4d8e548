"""Options of `prune` about its data and its resources: image preprocessing, a data-loader function,
sample count, time budget, memory limit, search resolution."""

from __future__ import annotations

from typing import Annotated

import typer

from darp_onnx.training.preprocess import PRESETS

DataLoader = Annotated[
    str | None,
    typer.Option("--data-loader", metavar="FILE.py[:FUNCTION]",
                 help="A Python function (default name load_data) that returns or yields dicts of input name -> "
                      "array (a batch, or one sample), optionally 'labels'; instead of --data."),
]
Preprocess = Annotated[
    str | None,
    typer.Option("--preprocess",
                 help=f"How --data images become inputs: a preset ({', '.join(PRESETS)}; default unit) and "
                      "key=value overrides, e.g. 'yolo,channels=bgr' or 'unit,mean=0.5/0.5/0.5,std=0.5/0.5/0.5'. "
                      "Keys: resize (stretch|letterbox|topleft|height|crop|stretch-crop), scale, mean, std, "
                      "channels (rgb|bgr), layout (auto|nchw|nhwc), dtype, pad, crop. In a --config file: a "
                      "[preprocess] table."),
]
MaxSamples = Annotated[
    int | None,
    typer.Option("--max-samples", min=1, help="Use at most this many samples of the data (a seeded random choice)."),
]
TimeBudget = Annotated[
    str | None,
    typer.Option("--time-budget",
                 help="Wall time for the whole prune (5m, 90s, 1h, or 'off'); steps, batch and samples are planned "
                      "from measured step times to fit it. Default 5m on CPU, 2m on CUDA. Explicit --steps, "
                      "--finetune-steps and --batch-size are kept."),
]
MaxDrift = Annotated[
    str | None,
    typer.Option("--max-drift",
                 help="Fail (exit 2, nothing written) when the pruned model's outputs differ from the original's on "
                      "the data by more than this relative L2 error, e.g. 0.3; 'off': write it whatever. Default "
                      "'auto': 0.99 (refuse only a model that keeps no signal) without labels, no limit with them."),
]
Holdout = Annotated[
    float,
    typer.Option("--holdout", min=0.0, max=0.5,
                 help="Share of --data kept out of search and fine-tune; the output error and agreement are "
                      "measured on it (with 40 samples or more; 0: on the samples trained on)."),
]
MaxMemory = Annotated[
    str | None,
    typer.Option("--max-memory",
                 help="Memory the run may use (8G, 512M); the batch is chosen to fit it and a model that cannot "
                      "fit is refused. Default: 70% of the memory available at the start."),
]
SearchResolution = Annotated[
    float,
    typer.Option("--search-resolution",
                 help="Run the gate search on images downscaled by this share (e.g. 0.5) when the model is fully "
                      "convolutional; extraction, fine-tune and validation stay at full size. 1: full size."),
]

__all__ = ["DataLoader", "Holdout", "MaxDrift", "MaxMemory", "MaxSamples", "Preprocess", "SearchResolution",
           "TimeBudget"]
