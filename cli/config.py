"""`--config FILE.toml`: option values from a TOML file; options given on the command line win.

Keys are option long names with '-' or '_' (`target-flops = 0.25`, `input_shape = ["input=1x1x32x32"]`).
A `[preprocess]` table (`preset = "imagenet"`, `resize = "letterbox"`, `mean = [0.5, 0.5, 0.5]`, ...) is the
`--preprocess` option written out key by key.
The file fills click's `default_map` from an eager callback, so every value goes through the same
conversion as the flag would and anything typed on the command line overrides it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from darp_onnx.errors import BadInputError


def option_names(command) -> dict[str, Any]:
    """Long option name (without '--') -> click parameter, for the options a config file may set."""
    names = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option" or param.name in ("config", "help"):
            continue
        longs = [opt[2:] for opt in param.opts if opt.startswith("--")]
        if longs:
            names[longs[0]] = param
    return names


def _toml_module():
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the same parser, packaged for Python 3.10
        except ModuleNotFoundError:
            raise BadInputError("--config needs Python 3.11 or later, or `pip install tomli`") from None
    return tomllib


def read_config(path: Path, ctx: typer.Context) -> dict[str, Any]:
    """Parameter name -> value for each key of the file, checked like the flag; BadInputError otherwise."""
    tomllib = _toml_module()
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such config file; check --config") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a folder; --config takes a .toml file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid TOML ({exc})") from None
    options = option_names(ctx.command)
    values: dict[str, Any] = {}
    for key, value in table.items():
        param = options.get(key.replace("_", "-"))
        if param is None:
            raise BadInputError(f"{path}: unknown key '{key}'; valid keys: {', '.join(sorted(options))}")
        if isinstance(value, dict) and param.name == "preprocess":
            value = _preprocess_table(path, value)
        if param.multiple and not isinstance(value, list):
            value = [value]
        try:
            _convert(param, ctx, value)
        except Exception as exc:  # click's BadParameter, or a TypeError for a table where a value belongs
            message = getattr(exc, "message", None) or str(exc)
            raise BadInputError(f"{path}: key '{key}' = {value!r}: {message}") from None
        values[param.name] = value
    return values


def _preprocess_table(path: Path, table: dict[str, Any]) -> str:
    from darp_onnx.training.preprocess import table_to_spec

    try:
        return table_to_spec(table)
    except BadInputError as exc:
        raise BadInputError(f"{path}: [preprocess] table: {exc}") from None


def _convert(param, ctx: typer.Context, value: Any) -> Any:
    """The value as the option would receive it (click's conversion, or typer's now that it vendors click)."""
    if hasattr(param, "type_cast_value"):
        return param.type_cast_value(ctx, value)
    return param.get_runtime_param().coerce(value, param=param, ctx=ctx)


def _load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **read_config(value, ctx)}
    return value


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", is_eager=True, callback=_load_config, metavar="FILE.toml",
        help="Read option values from a TOML file (keys are the long option names, e.g. target-flops = 0.25, "
             "input-shape = [\"input=1x1x32x32\"]); options on the command line win; relative paths are "
             "relative to the current folder.",
    ),
]
