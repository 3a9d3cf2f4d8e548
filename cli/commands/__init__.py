"""CLI commands; each module registers its command on the shared typer app when imported."""

from darp_onnx.cli.commands import check, diff, finetune, inspect, prune, validate  # noqa: F401
