"""Converter registry keyed by (domain, op_type, since_version), in the style of onnx2torch.

A model's opset resolves to the op's `since_version` through `onnx.defs.get_schema`, so one converter
serves every opset in which the op's schema did not change. Registering a key twice is an error.

Converters claim schema versions up to MAX_TESTED_OPSET only: a newer onnx may add a schema version
(new attributes, new semantics) that no converter has been checked against, and a model using it is
then refused instead of silently run with the old semantics. tests/test_registry_versions.py fails
when the installed onnx knows a newer version of a claimed op, so raising the cap is a reviewed step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import onnx
from torch import nn

if TYPE_CHECKING:
    from darp_onnx.proxy.context import ConvertContext

DEFAULT_DOMAIN = ""
# The newest default-domain opset the converters are tested against (tests/conformance runs the onnx
# node cases up to it; tests/ops compare with onnxruntime).
MAX_TESTED_OPSET = 28


class OperatorKey(NamedTuple):
    domain: str
    op_type: str
    since_version: int


@dataclass(frozen=True)
class OnnxMapping:
    """Which ONNX tensor names a converted node reads and writes ('' marks an omitted optional input)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass
class OperationConverterResult:
    """What a converter returns: the torch module and its ONNX wiring.

    `static_inputs` lists input positions that are read as constants (scales, pads, exponents) rather
    than differentiated through; float initializers used only there stay buffers, not parameters.
    """

    torch_module: nn.Module
    onnx_mapping: OnnxMapping
    static_inputs: frozenset[int] = field(default_factory=frozenset)


Converter = Callable[[onnx.NodeProto, "ConvertContext"], OperationConverterResult]

_CONVERTERS: dict[OperatorKey, Converter] = {}


def normalise_domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


def all_schema_versions(op_type: str, domain: str = DEFAULT_DOMAIN) -> list[int]:
    """All since_versions the installed onnx knows for an op, tested or not."""
    domain = normalise_domain(domain)
    return sorted(
        {
            s.since_version
            for s in onnx.defs.get_all_schemas_with_history()
            if s.name == op_type and normalise_domain(s.domain) == domain
        }
    )


def schema_versions(op_type: str, domain: str = DEFAULT_DOMAIN) -> list[int]:
    """The since_versions of an op up to MAX_TESTED_OPSET: the ones a converter may claim."""
    return [v for v in all_schema_versions(op_type, domain) if v <= MAX_TESTED_OPSET]


def add_converter(
    op_type: str, versions: Iterable[int] | None = None, domain: str = DEFAULT_DOMAIN
) -> Callable[[Converter], Converter]:
    """Register a converter for the given schema versions (when omitted, every known version up to
    MAX_TESTED_OPSET)."""
    domain = normalise_domain(domain)

    def deco(fn: Converter) -> Converter:
        chosen = list(versions) if versions is not None else schema_versions(op_type, domain)
        if not chosen:
            raise ValueError(f"no ONNX schema versions known for {domain or 'ai.onnx'}::{op_type}")
        untested = [v for v in chosen if not domain and v > MAX_TESTED_OPSET]
        if untested:
            raise ValueError(f"{op_type}: schema versions {untested} are newer than MAX_TESTED_OPSET "
                             f"({MAX_TESTED_OPSET})")
        for version in chosen:
            key = OperatorKey(domain, op_type, int(version))
            if key in _CONVERTERS:
                raise ValueError(f"converter for {key} registered twice")
            _CONVERTERS[key] = fn
        return fn

    return deco


def resolve_since_version(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN) -> int | None:
    try:
        schema = onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain=normalise_domain(domain))
    except onnx.defs.SchemaError:
        return None
    return int(schema.since_version)


def get_converter(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN) -> Converter | None:
    domain = normalise_domain(domain)
    since = resolve_since_version(op_type, opset, domain)
    if since is None:
        return None
    return _CONVERTERS.get(OperatorKey(domain, op_type, since))


def claimed_versions(op_type: str, domain: str = DEFAULT_DOMAIN) -> list[int]:
    """The schema versions of an op that have a converter."""
    domain = normalise_domain(domain)
    return sorted(k.since_version for k in _CONVERTERS if k.domain == domain and k.op_type == op_type)


def registered_keys() -> list[OperatorKey]:
    return sorted(_CONVERTERS)


def supported_ops() -> list[str]:
    """Op types with at least one converter, domain-qualified when not the default domain."""
    return sorted({f"{k.domain}::{k.op_type}" if k.domain else k.op_type for k in _CONVERTERS})
