"""Paths checked before a workflow reads anything, and the write stage of `prune`: the model and its
report folder land together, or neither does."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from darp_onnx.load.io import stage_model
from darp_onnx.load.preflight import check_run_paths
from darp_onnx.load.staging import StagedWrites
from darp_onnx.report.write import stage_reports
from darp_onnx.workflows.common import derived_path


def check_paths_first(model_or_path, *, output, write: bool, force: bool, suffix: str, data=None,
                      report: str | os.PathLike | None = None) -> None:
    """The model (and data) can be read, the output (given, or MODEL<suffix>.onnx) and the report folder
    can be written and are none of the inputs: all before the model is loaded."""
    from_object = isinstance(model_or_path, onnx.ModelProto)
    planned = None
    if write and (output is not None or not from_object):
        planned = Path(output) if output is not None else derived_path(model_or_path, suffix)
    check_run_paths(model=None if from_object else model_or_path, output=planned, force=force,
                    report=report if write else None, data=data if isinstance(data, (str, os.PathLike)) else None)


def write_prune_outputs(result, out_path: Path, *, report: str | os.PathLike | None, force: bool,
                        protect: tuple[str | os.PathLike, ...]) -> dict[str, Path]:
    """Stage the pruned model (`result.model`) and, with `report`, report.json/.md/.html, then rename all
    into place; returns the report paths by kind (empty without `report`)."""
    from darp_onnx.api import prune_diff

    with StagedWrites() as stage:
        stage_model(result.model, out_path, stage, force=force, protect=protect)
        paths = {} if report is None else stage_reports(prune_diff(result), report, stage)
        stage.commit()
    return paths
