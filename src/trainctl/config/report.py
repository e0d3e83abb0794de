"""Text for `trainctl config show | layers | validate` (plain functions behind the click commands)."""

from __future__ import annotations

import os
from typing import Iterable

from trainctl.config.resolve import Layer, ResolvedConfig, resolve
from trainctl.config.validate import Problem, validate


def show_text(config: str, overrides: Iterable[str] = (), provenance: bool = False) -> str:
    """The resolved config as YAML; with provenance, `# <source>` after each line."""
    rc = resolve(config, overrides)
    header = f"# {rc.path} resolved by trainctl"
    if rc.overrides:
        header += " with " + " ".join(f"-o {o}" for o in rc.overrides)
    return header + "\n" + rc.to_yaml(provenance=provenance)


def layers_text(config: str) -> str:
    """The `_BASE_` tree, top file first; later bases win over earlier ones, a file over its bases."""
    rc = resolve(config)
    lines = [f"{rc.layers.name}  ({os.path.abspath(rc.layers.path)})"]

    def walk(layer: Layer, prefix: str) -> None:
        for i, base in enumerate(layer.bases):
            last = i == len(layer.bases) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{base.name}")
            walk(base, prefix + ("    " if last else "│   "))

    walk(rc.layers, "")
    order = [layer.name for layer in _merge_order(rc.layers)]
    lines.append("")
    lines.append("merge order (later wins): " + " -> ".join(order))
    return "\n".join(lines)


def _merge_order(layer: Layer) -> list[Layer]:
    order: list[Layer] = []
    for base in layer.bases:
        order.extend(_merge_order(base))
    order.append(layer)
    return order


def validate_config(config: str, overrides: Iterable[str] = ()) -> tuple[ResolvedConfig, list[Problem]]:
    rc = resolve(config, overrides)
    return rc, validate(rc)
