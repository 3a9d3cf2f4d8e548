"""`--data-loader FILE.py[:FUNCTION]`: the user's own function yields feed dicts, as polygraphy's data loaders do.

The function (default name `load_data`) takes no arguments and returns or yields dicts mapping model input
names to arrays: one batch each (samples first), or one sample without the batch axis. An optional
`labels` key carries integer class labels. Reading stops after `max_samples` samples.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from darp_onnx.errors import BadInputError, first_line

LOADER_FLAG = "--data-loader"
DEFAULT_FUNCTION = "load_data"


def parse_loader_spec(spec: str) -> tuple[Path, str]:
    """`path/to/file.py:function` or `path/to/file.py` (function `load_data`)."""
    path_text, sep, function = spec.rpartition(":")
    if not sep or not function.isidentifier() or not path_text:
        path_text, function = spec, DEFAULT_FUNCTION
    path = Path(path_text)
    if path.suffix != ".py":
        raise BadInputError(f"{LOADER_FLAG} {spec}: give a Python file and a function, e.g. my_data.py:load_data")
    if not path.is_file():
        raise BadInputError(f"{LOADER_FLAG} {spec}: {path} is not a file; check the path")
    return path, function


def load_function(spec: str):
    """Import the file as a module of its own and return its function."""
    path, function = parse_loader_spec(spec)
    name = f"darp_onnx_user_loader_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise BadInputError(f"{LOADER_FLAG} {spec}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error it raises is reported in one line
        sys.modules.pop(name, None)
        raise BadInputError(f"{LOADER_FLAG} {spec}: importing {path} failed: {type(exc).__name__}: "
                            f"{first_line(exc)}") from None
    found = getattr(module, function, None)
    if not callable(found):
        names = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == name)
        raise BadInputError(f"{LOADER_FLAG} {spec}: {path} has no function '{function}' "
                            f"(functions: {', '.join(names) or 'none'})")
    return found


def _batch(feed: Any, index: int, names: list[str], ranks: Mapping[str, int], spec: str) -> dict[str, np.ndarray]:
    if not isinstance(feed, Mapping):
        raise BadInputError(f"{LOADER_FLAG} {spec}: item {index} is a {type(feed).__name__}, not a dict of "
                            f"input name -> array")
    missing = [n for n in names if n not in feed]
    if missing:
        raise BadInputError(f"{LOADER_FLAG} {spec}: item {index} has no array for input(s) {', '.join(missing)} "
                            f"(keys: {', '.join(map(str, feed)) or 'none'})")
    arrays = {}
    for key in [*names, "labels"]:
        if key not in feed:
            continue
        try:
            array = np.asarray(feed[key])
        except Exception as exc:  # arbitrary user objects
            raise BadInputError(f"{LOADER_FLAG} {spec}: item {index}, '{key}' is not an array ({first_line(exc)})"
                                ) from None
        rank = 1 if key == "labels" else ranks[key]
        arrays[key] = array[None] if array.ndim == rank - 1 else array
    return arrays


def read_feeds(spec: str, names: list[str], ranks: Mapping[str, int], *,
               max_samples: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Call the loader and concatenate what it yields (at most `max_samples` samples)."""
    function = load_function(spec)
    try:
        produced = function()
        if isinstance(produced, Mapping) or not isinstance(produced, Iterable):
            produced = [produced]
        parts: list[dict[str, np.ndarray]] = []
        count = 0
        for index, feed in enumerate(produced):
            batch = _batch(feed, index, names, ranks, spec)
            parts.append(batch)
            count += len(batch[names[0]])
            if max_samples is not None and count >= max_samples:
                break
    except BadInputError:
        raise
    except Exception as exc:  # the user's function: any error it raises is reported in one line
        raise BadInputError(f"{LOADER_FLAG} {spec}: the function raised {type(exc).__name__}: {first_line(exc)}"
                            ) from None
    if not parts:
        raise BadInputError(f"{LOADER_FLAG} {spec}: the function yielded no data")
    try:
        inputs = {n: np.concatenate([p[n] for p in parts])[:max_samples] for n in names}
    except ValueError as exc:
        raise BadInputError(f"{LOADER_FLAG} {spec}: batches do not stack ({first_line(exc)})") from None
    labels = None
    if all("labels" in p for p in parts):
        labels = np.concatenate([p["labels"] for p in parts])[:max_samples]
    return inputs, labels
