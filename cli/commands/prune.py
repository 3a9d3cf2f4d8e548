"""`darp-onnx prune MODEL`: search, rewrite, validate and write a smaller model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from darp_onnx.cli.app import app
from darp_onnx.cli.config import ConfigFile
from darp_onnx.cli.data_options import (
    DataLoader,
    Holdout,
    MaxDrift,
    MaxMemory,
    MaxSamples,
    Preprocess,
    SearchResolution,
    TimeBudget,
)
from darp_onnx.cli.launch import launch_local
from darp_onnx.cli.options import AllowNonfinite, JsonOut, Quiet, Verbose, Verbosity
from darp_onnx.cli.output import console_err, handle_errors, print_json
from darp_onnx.cli.progress import SearchProgress
from darp_onnx.errors import OptionError, PreflightError
from darp_onnx.runtime import distributed
from darp_onnx.search.schedule import SCHEDULES
from darp_onnx.workflows.config import (
    ExtractionConfig,
    IOConfig,
    PruneConfig,
    RecoveryConfig,
    ResourceConfig,
    SearchConfig,
    ValidationConfig,
)

# library parameter -> flag, where the names differ (the others: `--` and dashes, see `flag_namer`)
FLAGS = {"search_steps": "--steps", "input_shapes": "--input-shape", "output": "-o/--output", "keep_groups": "--keep"}


@app.command("prune")
@handle_errors(flags=FLAGS)
def prune_command(
    model: Annotated[Path, typer.Argument(help="The ONNX model to prune (never modified).")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output path (default: MODEL.pruned.onnx next to MODEL)."),
    ] = None,
    target_flops: Annotated[
        float | None,
        typer.Option(help="MACs to keep: a fraction (0.5) or an absolute count. Default 0.5."),
    ] = None,
    target_params: Annotated[
        float | None,
        typer.Option(help="Parameters to keep: a fraction or an absolute count."),
    ] = None,
    target_latency: Annotated[
        float | None,
        typer.Option(help="Latency to keep, a fraction of what onnxruntime layer timings on --device estimate "
                          "for the model (implies --latency-aware)."),
    ] = None,
    method: Annotated[
        str, typer.Option(help="darp (the gate search) or a baseline: l1, bn, random.")
    ] = SearchConfig.method,
    data: Annotated[
        Path | None,
        typer.Option(help=(".npz (arrays named after the inputs, optional 'labels'), a folder of .npz/.npy, or a "
                           "folder of images (jpg, png, bmp, webp; see --preprocess); default: synthetic inputs "
                           "and distillation.")),
    ] = None,
    input_shape: Annotated[
        list[str] | None,
        typer.Option("--input-shape",
                     help="NAME=1x3x320x320 for symbolic dims (repeatable; a bare shape for one-input models)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Search steps (darp). Default: planned to fit --time-budget (at most 200).")
    ] = SearchConfig.steps,
    finetune_steps: Annotated[
        int | None, typer.Option(help="Recovery fine-tune steps with the hard masks. Default: planned (at most 100).")
    ] = RecoveryConfig.steps,
    batch_size: Annotated[
        int | None, typer.Option(help="Batch size for search and fine-tune. Default: planned to fit the time and "
                                      "memory budgets (at most 32).")
    ] = SearchConfig.batch_size,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate of the recovery fine-tune (cosine). Default: SGD with momentum "
                                        "at 0.03 where BatchNorm is re-inserted (CNNs), else 1e-3; Adam at 1e-3 in "
                                        "dense models without it (transformers).")
    ] = RecoveryConfig.lr,
    search_lr: Annotated[
        float | None, typer.Option(help="Learning rate of the weights during the search. Default: SGD with "
                                        "momentum at 0.03 where BatchNorm is re-inserted (CNNs), else 1e-3; Adam at "
                                        "1e-3 in dense models without it (transformers).")
    ] = SearchConfig.lr,
    tau_sample: Annotated[
        str,
        typer.Option(help="Sampling temperature START:END (relaxed Bernoulli gates)."),
    ] = "{}:{}".format(*SearchConfig.tau_sample),
    tau_penalty: Annotated[
        str, typer.Option(help="Penalty temperature START:END (keep probabilities).")
    ] = "{}:{}".format(*SearchConfig.tau_penalty),
    schedule: Annotated[
        str, typer.Option(help=f"Temperature schedule: {', '.join(SCHEDULES)}.")
    ] = SearchConfig.schedule,
    channel_multiple: Annotated[
        str | None,
        typer.Option(help="Keep channel counts at multiples of this; 'auto' (the default): what onnxruntime's "
                          "kernels want on --device (16 with AVX-512, 8 with AVX2 or CUDA); 1: any width."),
    ] = None,
    latency_aware: Annotated[
        bool,
        typer.Option(help="Time the layers on onnxruntime (--device) and remove what costs the most time per "
                          "importance lost: faster models at the same MACs budget."),
    ] = ExtractionConfig.latency_aware,
    latency_weight: Annotated[
        float,
        typer.Option(help="With --latency-aware: the worth of a relative latency cut against relative importance "
                          "lost when choosing among candidate extractions (1: alike; higher: faster models)."),
    ] = ExtractionConfig.latency_weight,
    keep_branches: Annotated[
        bool, typer.Option(help="Never drop whole residual branches (channels only).")
    ] = ExtractionConfig.keep_branches,
    keep_kinds: Annotated[
        str | None,
        typer.Option(help="Never prune units of these kinds, comma-separated (channel, branch, and head where "
                          "attention heads are found; see `inspect`): e.g. head,branch prunes FFN neurons and "
                          "channels only."),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Never prune the groups whose label (inspect's 'group' column) matches this glob "
                                    "pattern, e.g. '*stft*' for a fixed spectrogram front end (repeatable)."),
    ] = None,
    hard_gates: Annotated[
        bool, typer.Option(help="Straight-through hard 0/1 gates in the forward pass.")
    ] = SearchConfig.hard_gates,
    device: Annotated[
        str, typer.Option(help="auto, cpu or cuda (cuda without a usable GPU is an error).")
    ] = PruneConfig.device,
    seed: Annotated[
        int, typer.Option(help="Random seed. A run repeats exactly for a given seed when its steps and batch are "
                               "given (--steps, --finetune-steps, --batch-size) or --time-budget is off; otherwise "
                               "the time budget plans them from speeds measured on this machine, which vary.")
    ] = PruneConfig.seed,
    force: Annotated[bool, typer.Option(help="Overwrite the output file if it exists.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Write report.json, report.md and report.html into this folder."),
    ] = None,
    allow_nonfinite: AllowNonfinite = False,
    data_loader: DataLoader = None,
    preprocess: Preprocess = None,
    max_samples: MaxSamples = None,
    time_budget: TimeBudget = None,
    max_drift: MaxDrift = None,
    holdout: Holdout = IOConfig.holdout,
    max_memory: MaxMemory = None,
    search_resolution: SearchResolution = ResourceConfig.search_resolution,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    config: ConfigFile = None,
    nproc: Annotated[
        int, typer.Option(help="Search and fine-tune in this many processes on this machine (torchrun, gloo on "
                               "CPU, NCCL on GPUs); 1: this process.", min=1)
    ] = 1,
) -> None:
    """Prune MODEL to a MACs, parameter or latency budget, validate it with onnxruntime and write it.

    Exit codes: 0 success, 1 bad input or infeasible budget, 2 validation failure (nothing written)."""
    from darp_onnx.api import prune
    from darp_onnx.load.input_shapes import parse_input_shapes
    from darp_onnx.load.preflight import same_path
    from darp_onnx.workflows.config import prune_config

    if nproc > 1 and not distributed.launched():
        raise typer.Exit(launch_local(nproc))
    quiet = quiet or not distributed.is_main()  # under torchrun only rank 0 talks
    say = Verbosity(quiet=quiet, verbose=verbose)
    if config is not None and output is not None and same_path(config, output):
        raise PreflightError(f"{output}: is the --config file; choose another -o/--output")
    config = prune_config(
        output=output, target_flops=target_flops, target_params=target_params, target_latency=target_latency,
        method=method, data=data, input_shapes=parse_input_shapes(input_shape or []), search_steps=steps,
        finetune_steps=finetune_steps, batch_size=batch_size, lr=lr, search_lr=search_lr,
        tau_sample=_pair(tau_sample, "tau_sample"), tau_penalty=_pair(tau_penalty, "tau_penalty"),
        schedule=schedule, hard_gates=hard_gates, channel_multiple=channel_multiple, latency_aware=latency_aware,
        latency_weight=latency_weight, keep_branches=keep_branches,
        keep_kinds=tuple(k.strip() for k in (keep_kinds or "").split(",") if k.strip()), keep_groups=tuple(keep or ()),
        device=device, seed=seed,
        force=force,
        report=report, allow_nonfinite=allow_nonfinite,
        data_loader=data_loader, preprocess=preprocess, max_samples=max_samples,
        time_budget=ResourceConfig.time_budget if time_budget is None else time_budget, max_memory=max_memory,
        search_resolution=search_resolution,
        max_drift=ValidationConfig.max_drift if max_drift is None else max_drift, holdout=holdout,
    )
    with SearchProgress(enabled=not quiet, total=(config.search.steps or 0) if config.search.method == "darp" else 0,
                        finetune_total=config.recovery.steps or 0) as progress:
        result = prune(model, config, progress=progress.update)
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    document = result.to_json()
    if report is not None:
        document["reports"] = {k: str(v) for k, v in result.reports.items()}
    if json_out:
        print_json(document)
    if verbose:
        _group_table(document)
    if not quiet:
        _summary(document)
    say.elapsed("pruned")


def _pair(text: str, parameter: str) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise OptionError(parameter, f"{{option}} '{text}': expected START:END, e.g. 1.0:0.1") from None
    return start, end


def units_removed(doc: dict) -> str:
    """'88 channels', or '0 channels and 3 branches' where whole units of other kinds went (residual branches,
    attention heads): the channel count alone read '0 channels removed' for a model pruned by branches."""
    others: dict[str, int] = {}
    for g in doc["groups"]:
        if g["kind"] != "channel" and g["kept"] < g["size"]:
            others[g["kind"]] = others.get(g["kind"], 0) + g["size"] - g["kept"]
    def counted(n: int, kind: str) -> str:
        return f"{n} {kind}" if n == 1 else f"{n} {kind}{'es' if kind.endswith(('ch', 'sh', 's')) else 's'}"

    parts = [counted(doc["channels_removed"], "channel")] + [counted(n, kind) for kind, n in sorted(others.items())]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _positives(fid: dict) -> str:
    """', worst output 'x' 1.00' where one output is far worse than the whole (a YOLOv8's class scores at 1.0
    under 0.134 overall), and ', values above 0.5 kept (F1) 0.93 in 'hm'' for an output of probabilities."""
    worst = fid.get("worst_output_error")
    text = (f", worst output '{escape(fid['worst_output'])}' {worst:.3g}"
            if worst is not None and worst > 2 * fid["relative_error"] else "")
    if fid.get("positives_kept") is None:
        return text
    return text + f", values above 0.5 kept (F1) {fid['positives_kept']:.2f} in '{escape(fid['positives_output'])}'"


def _summary(doc: dict) -> None:
    v = doc["validation"]
    fid = v["fidelity"]
    agreement = "" if fid["top1_agreement"] is None else f", top-1 agreement {fid['top1_agreement']:.1%}"
    if fid.get("sequences_kept") is not None:
        agreement += f", sequences read alike {fid['sequences_kept']:.1%}"
    console_err.print(
        f"[bold green]wrote[/] {doc['output']}: MACs {doc['flops_before']:,} -> {doc['flops_after']:,} "
        f"({doc['flops_after'] / max(doc['flops_before'], 1):.1%}), params {doc['params_before']:,} -> "
        f"{doc['params_after']:,}, nodes {doc['nodes_before']} -> {doc['nodes_after']}, "
        f"{units_removed(doc)} removed; onnxruntime {v['provider']}: latency "
        f"{v['latency_ms_before']:.2f} -> {v['latency_ms_after']:.2f} ms{agreement}, "
        f"max |pruned - masked proxy| {v['max_abs_diff']:.2g}; output error against the original "
        f"{fid['relative_error']:.3g} (relative, on {v.get('fidelity_on') or 'the data'}){_positives(fid)}"
    )
    for warning in doc.get("warnings", []):
        console_err.print(f"[yellow]{escape(warning)}[/]")


def _group_table(doc: dict) -> None:
    """--verbose: channels kept per group."""
    table = Table(title="channel groups", title_justify="left")
    for column in ("id", "kind", "label", "kept", "status"):
        table.add_column(column)
    for g in doc["groups"]:
        status = "kept" if g["frozen"] is None else f"frozen: {g['frozen']}"
        status = "pruned" if g["kept"] < g["size"] else status
        table.add_row(str(g["id"]), g["kind"], escape(g["label"]), f"{g['kept']}/{g['size']}", escape(status))
    console_err.print(table)
