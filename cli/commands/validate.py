"""`darp-onnx validate ORIGINAL PRUNED`: check a pruned file and compare it with the model it came from."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from darp_onnx.cli.app import app
from darp_onnx.cli.errors import JSON_ATTRIBUTE, describe
from darp_onnx.cli.options import AllowNonfinite, JsonOut, Quiet, Verbose, Verbosity
from darp_onnx.cli.output import handle_errors, print_json
from darp_onnx.load.input_shapes import parse_input_shapes, shapes_text


@app.command("validate")
@handle_errors
def validate_command(
    original: Annotated[Path, typer.Argument(help="The model PRUNED was made from.")],
    pruned: Annotated[Path, typer.Argument(help="The pruned (or otherwise rewritten) model to check.")],
    data: Annotated[Path | None, typer.Option(help=".npz (arrays named after the inputs, or test_<input>; "
                                                   "optional labels / test_labels), a folder of .npz, or a "
                                                   "folder of images (--preprocess); its test split when it "
                                                   "has one. Default: synthetic inputs.")] = None,
    preprocess: Annotated[str | None, typer.Option(help="How image files in --data become inputs, as in "
                                                        "prune (PRESET[,key=value...]).")] = None,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="NAME=1x3x32x32 (or a bare "
                                                          "shape for one-input models) for symbolic dims; "
                                                          "repeatable.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: the onnxruntime provider for both models "
                                             "(cuda only where a session really runs there, else an "
                                             "error).")] = "auto",
    max_drift: Annotated[float | None, typer.Option(help="Fail (exit 2) when an output's relative L2 error "
                                                         "vs the original exceeds this, e.g. 0.05.")] = None,
    atol: Annotated[float | None, typer.Option(help="Fail (exit 2) unless every output equals the "
                                                    "original's within atol/rtol (for rewrites that should "
                                                    "not change the function); default rtol 1e-3.")] = None,
    rtol: Annotated[float | None, typer.Option(help="Relative tolerance for that check; default atol "
                                                    "1e-4.")] = None,
    latency_runs: Annotated[int, typer.Option(help="Timed runs per model after 3 warm-up runs, batch 1 "
                                                   "(0: skip timing).")] = 20,
    samples: Annotated[int, typer.Option(help="Synthetic samples when no --data is given.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic inputs; they are never those a data-free "
                                           "prune with the same --seed trained on.")] = 0,
    allow_nonfinite: AllowNonfinite = False,
    json_out: JsonOut = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Validate PRUNED against ORIGINAL with onnxruntime: onnx.checker (full) and strict shape inference
    on PRUNED, fidelity to ORIGINAL (top-1 agreement and accuracy with labels, relative output error),
    latency (median and p10-p90, same inputs and provider), parameters, MACs and file size.

    Equivalence with the masked proxy needs the masks, so only `prune` checks it (on every run).

    Exit codes: 0 passed;
    1 bad input (ORIGINAL or --data unusable, --device cuda without a usable GPU);
    2 validation failure (PRUNED unreadable or broken, or beyond --max-drift / --atol / --rtol)."""
    from darp_onnx.api import validate
    from darp_onnx.validation.compare import ToleranceExceeded

    say = Verbosity(quiet=quiet, verbose=verbose)
    try:
        result = validate(original, pruned, data=data, preprocess=preprocess,
                          input_shapes=parse_input_shapes(input_shape),
                          device=device, atol=atol, rtol=rtol, max_drift=max_drift, latency_runs=latency_runs,
                          samples=samples, seed=seed, allow_nonfinite=allow_nonfinite)
    except ToleranceExceeded as exc:
        exc.result["error"] = asdict(describe(exc))  # one JSON document: the measurements and the error
        _show(exc.result, json_out, say)
        setattr(exc, JSON_ATTRIBUTE, False)
        raise
    _show(result, json_out, say)
    say.elapsed("validated")


def _show(result: dict[str, Any], json_out: bool, say: Verbosity) -> None:
    if json_out:
        print_json(result)
    post = result.get("post_processing") or {}
    for note in [*result["data"]["notes"], *([post["kept"], *post["notes"]] if post else [])]:
        say.info(escape(f"note: {note}"), soft_wrap=True)  # diagnostics: on stderr with --json too, as prune says
    for warning in result.get("warnings", []):
        say.info(f"[yellow]{escape(warning)}[/]", soft_wrap=True)
    if say.quiet or (json_out and not say.verbose):
        return
    provider = result["provider"]
    sizes = f" at {shapes_text(result['input_shapes'])}" if result["input_shapes"] else ""
    say.info(escape(f"{result['original']} → {result['pruned']}: onnxruntime {provider['pruned']} "
                    f"({provider['reason']}), {result['data']['samples']} samples from "
                    f"{result['data']['source']}{sizes}"), soft_wrap=True)
    say.info(_table(result))
    if say.verbose:
        _details(result, say)
    if result["passed"]:
        say.info("[bold green]passed[/]: " + ", ".join(result["checks"]))


def _table(result: dict[str, Any]) -> Table:
    table = Table()
    for col, justify in (("Metric", "left"), ("Original", "right"), ("Pruned", "right"), ("Change", "right")):
        table.add_column(col, justify=justify)
    for key, label in (("params", "parameters"), ("macs", "MACs"), ("file_bytes", "file bytes")):
        c = result[key]
        table.add_row(label, f"{c['before']:,}", f"{c['after']:,}", f"{c['ratio']:.1%}")
    lat = result["latency_ms"]
    if lat is not None:
        b, a = lat["before"], lat["after"]
        table.add_row("latency ms (median)", f"{b['median_ms']:.3f}", f"{a['median_ms']:.3f}",
                      f"speedup x{lat['speedup']:.2f}")
        table.add_row("latency ms (p10-p90)", f"{b['p10_ms']:.3f}-{b['p90_ms']:.3f}",
                      f"{a['p10_ms']:.3f}-{a['p90_ms']:.3f}", "")
    fid = result["fidelity"]
    if fid["accuracy_before"] is not None:
        change = f"{(fid['accuracy_after'] - fid['accuracy_before']) * 100:+.1f} pt"
        table.add_row("accuracy", f"{fid['accuracy_before']:.1%}", f"{fid['accuracy_after']:.1%}", change)
    if fid["top1_agreement"] is not None:
        table.add_row("top-1 agreement", "", f"{fid['top1_agreement']:.1%}", "")
    if fid.get("sequences_kept") is not None:
        table.add_row(f"sequences read alike, '{escape(fid['sequences_output'])}'", "", f"{fid['sequences_kept']:.1%}",
                      "")
    ids = result.get("ids_only", False)
    table.add_row("ids that differ" if ids else "relative output error", "", f"{fid['relative_error']:.3g}", "")
    if fid.get("positives_kept") is not None:
        table.add_row(f"values > 0.5 kept (F1), '{escape(fid['positives_output'])}'", "",
                      f"{fid['positives_kept']:.3f}", "")
    if fid.get("picture_psnr_db") is not None:
        table.add_row(f"PSNR against the original, '{escape(fid['picture_output'])}'", "",
                      f"{fid['picture_psnr_db']:.1f} dB", "")
    if not ids:  # ids 16 apart are not further apart than ids 1 apart
        table.add_row("max abs diff", "", f"{result['max_abs_diff']:.3g}", "")
    return table


def _details(result: dict[str, Any], say: Verbosity) -> None:
    table = Table(title="outputs", title_justify="left")
    for col in ("output", "shape", "max abs diff", "relative error", "within atol/rtol"):
        table.add_column(col)
    for row in result["outputs"]:
        within = row.get("within_tolerance")
        table.add_row(escape(row["name"]), "x".join(map(str, row["shape"])), f"{row['max_abs_diff']:.3g}",
                      f"{row['relative_error']:.3g}", "—" if within is None else str(within))
    say.detail(table)
    timings = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in result["timings"].items())
    say.detail(f"timings: {timings}")
    say.detail(result["note"])
