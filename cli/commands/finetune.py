"""`darp-onnx finetune MODEL --data FILE`: retrain a model on a new labelled task and write it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from darp_onnx.cli.app import app
from darp_onnx.cli.launch import launch_local
from darp_onnx.cli.options import AllowNonfinite, JsonOut, Quiet, Verbose, Verbosity
from darp_onnx.cli.output import console_err, handle_errors, print_json
from darp_onnx.cli.progress import RichProgress
from darp_onnx.runtime import distributed


class FinetuneProgress(RichProgress):
    """`update(stage, info)` is the `progress` callback of `finetune()`."""

    def __init__(self, *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._task = None
        self._loss = float("nan")
        self._val = ""

    def update(self, stage: str, info: dict[str, float]) -> None:
        if not self.enabled:
            return
        if stage == "start":
            console_err.print(f"{int(info['train_samples'])} training, {int(info['val_samples'])} validation "
                              f"samples; up to {int(info['steps'])} steps")
            self._task = self.add_task("fine-tune", total=int(info["steps"]), info="")
            return
        if stage == "train":
            self._loss = info["loss"]
        elif stage == "eval":
            mark = " *" if info["best"] else ""
            self._val = f"  val loss {info['val_loss']:.3f} acc {info['val_accuracy']:.1%}{mark}"
        if self._task is not None:
            self._progress.update(self._task, completed=int(info["step"]),
                                  info=f"loss {self._loss:.3f}{self._val}")


@app.command("finetune")
@handle_errors
def finetune_command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to fine-tune (never modified).")],
    data: Annotated[Path, typer.Option(help=".npz with input arrays and int 'labels' (or 'train_<input>' / "
                                            "'train_labels'), or a folder of .npz files.")],
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Output path (default: MODEL.finetuned.onnx).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (batches; default 200).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training split (instead of "
                                                    "--steps).")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    init: Annotated[str, typer.Option(help="inherit: keep the weights; reinit: re-initialise them by role "
                                           "(train the architecture from scratch).")] = "inherit",
    new_head: Annotated[int | None, typer.Option(help="Replace the final classifier projection with a fresh "
                                                      "K-class one.")] = None,
    freeze_backbone: Annotated[bool, typer.Option(help="Train only the final classifier "
                                                       "projection.")] = False,
    val_fraction: Annotated[float, typer.Option(help="Share of each class held out for validation and early "
                                                     "stopping (0: none).")] = 0.2,
    patience: Annotated[int, typer.Option(help="Evaluations without a lower validation loss before "
                                               "stopping.")] = 5,
    eval_every: Annotated[int | None, typer.Option(help="Steps between evaluations (default: one epoch, at "
                                                        "least 10).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; a run is deterministic for a given seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (cuda without a usable GPU is an "
                                             "error).")] = "auto",
    force: Annotated[bool, typer.Option(help="Overwrite the output file if it exists.")] = False,
    allow_nonfinite: AllowNonfinite = False,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    nproc: Annotated[int, typer.Option(help="Train in this many processes on this machine (torchrun; gloo on "
                                            "CPU, NCCL on GPUs); 1: this process.", min=1)] = 1,
) -> None:
    """Fine-tune MODEL on labelled data (cross-entropy), keep the best weights by validation loss,
    check the result against onnxruntime and write it.

    Exit codes: 0 success, 1 bad input (e.g. missing or out-of-range labels), 2 validation failure."""
    from darp_onnx.api import finetune

    if nproc > 1 and not distributed.launched():
        raise typer.Exit(launch_local(nproc))
    quiet = quiet or not distributed.is_main()  # under torchrun only rank 0 talks
    say = Verbosity(quiet=quiet, verbose=verbose)
    with FinetuneProgress(enabled=not quiet) as progress:
        result = finetune(
            model, data=data, output=output, steps=steps, epochs=epochs, lr=lr, batch_size=batch_size,
            init=init, new_head=new_head, freeze_backbone=freeze_backbone, val_fraction=val_fraction,
            patience=patience, eval_every=eval_every, seed=seed, device=device, force=force,
            allow_nonfinite=allow_nonfinite, progress=progress.update,
        )
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    document = result.to_json()
    if json_out:
        print_json(document)
    if not quiet:
        _summary(document)
    say.elapsed("fine-tuned")


def _summary(doc: dict) -> None:
    val = ""
    if doc["val_loss_best"] is not None:
        val = (f", val loss {doc['val_loss_initial']:.3f} -> {doc['val_loss_best']:.3f}, val accuracy "
               f"{doc['val_accuracy_initial']:.1%} -> {doc['val_accuracy_best']:.1%}")
    console_err.print(
        f"[bold green]wrote[/] {doc['output']}: {doc['steps_run']} steps (best at step {doc['best_step']}"
        f"{', stopped early' if doc['stopped_early'] else ''}), train loss {doc['train_loss_first']:.3f} -> "
        f"{doc['train_loss_last']:.3f}{val}; {doc['trainable_parameters']:,} trainable / "
        f"{doc['frozen_parameters']:,} frozen weights, init {doc['init']}; max |onnxruntime - proxy| "
        f"{doc['max_abs_diff']:.2g}"
    )
