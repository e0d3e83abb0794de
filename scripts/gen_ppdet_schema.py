#!/usr/bin/env python
"""Generate src/trainctl/config/ppdet_schema.json from the installed PaddleDetection.

trainctl validates configs and `-o` keys without importing paddle, so what ppdet
knows about keys is captured here once (this script does import ppdet):

- components: classes registered with `@register` (ppdet's global_config holds a
  SchemaDict for each), with constructor argument names and default types;
- serializable: classes ppdet builds from YAML tags (`!PiecewiseDecay`, datasets,
  reader transforms): every `!Name` constructor PyYAML's Loader has, plus every
  transform class `ppdet.data.transform` exposes (readers look transforms up there);
- top_level / children: the keys PaddleDetection's own configs (the reference corpus)
  and trainctl's bundled configs use; `seen`: argument types those configs use that
  differ from the default's type (accepted by validate).

Usage (from the repository root, with paddle and ppdet installed):
    python scripts/gen_ppdet_schema.py [--reference ../shared/reference/paddledet-2.6-configs]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from trainctl.config.schema import type_name  # noqa: E402
from trainctl.config.yamlio import Tagged, load_yaml_file  # noqa: E402

OUT = ROOT / "src" / "trainctl" / "config" / "ppdet_schema.json"
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference" / "paddledet-2.6-configs"
BUNDLED = ROOT / "src" / "trainctl" / "configs"


def describe_class(cls) -> dict:
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return {"args": {}, "kwargs": True}
    args: dict[str, str | None] = {}
    kwargs = False
    for name, param in list(signature.parameters.items())[1:]:
        if param.kind is param.VAR_KEYWORD:
            kwargs = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        default = param.default
        if default is inspect.Parameter.empty or name in getattr(cls, "__inject__", ()):
            # injected arguments take a component name or a {name: ..., args} mapping
            args[name] = None
            continue
        default = getattr(default, "default_value", default)  # ppdet's SharedConfig
        args[name] = type_name(default)
    entry: dict = {"args": args}
    if kwargs:
        entry["kwargs"] = True
    return entry


def ppdet_classes() -> tuple[dict, dict, str]:
    import yaml

    import ppdet
    import ppdet.engine  # noqa: F401  (imports modeling, data and optimizer: everything registers)
    from ppdet.core import workspace

    components = {
        name: describe_class(getattr(schema.pymodule, name))
        for name, schema in sorted(workspace.get_registered_modules().items())
    }
    serializable = {}
    for tag, constructor in sorted(yaml.Loader.yaml_constructors.items(), key=lambda kv: str(kv[0])):
        if not (isinstance(tag, str) and tag.startswith("!")):
            continue
        cells = [c.cell_contents for c in (constructor.__closure__ or ()) if isinstance(c.cell_contents, type)]
        if cells:
            serializable[tag[1:]] = describe_class(cells[0])
    # reader transforms are looked up by name in ppdet.data.transform, registered or not
    from ppdet.data import transform
    from ppdet.data.transform.operators import BaseOperator

    for name in dir(transform):
        obj = getattr(transform, name)
        if isinstance(obj, type) and issubclass(obj, BaseOperator) and name not in serializable:
            serializable[name] = describe_class(obj)
    return components, serializable, getattr(ppdet, "__version__", "unknown")


def config_mappings(folders: list[Path]):
    """Each config file under the folders that parses to a mapping (the others are skipped)."""
    for folder in folders:
        for path in sorted(folder.rglob("*.yml")):
            try:
                data = load_yaml_file(path)
            except Exception:
                continue
            if isinstance(data, dict):
                yield data


def config_keys(folders: list[Path], components: dict) -> tuple[dict, dict]:
    """Top-level keys (with their value type when all configs agree) and reader-like child keys."""
    top_types: dict[str, set] = {}
    children: dict[str, set] = {}
    for data in config_mappings(folders):
        for key, value in data.items():
            if key == "_BASE_" or not isinstance(key, str):
                continue
            kind = f"!{value.tag}" if isinstance(value, Tagged) else type_name(value)
            top_types.setdefault(key, set()).add(kind)
            if isinstance(value, dict):
                children.setdefault(key, set()).update(k for k in value if isinstance(k, str))
    top_level = {}
    for key, kinds in sorted(top_types.items()):
        kinds.discard(None)
        if kinds == {"int", "float"}:
            kinds = {"float"}
        top_level[key] = kinds.pop() if len(kinds) == 1 and not next(iter(kinds)).startswith("!") else None
    extra_children = {}
    for key, keys in sorted(children.items()):
        known = set(components.get(key, {}).get("args", {}))
        extra = sorted(keys - known)
        if extra:
            extra_children[key] = extra
    return top_level, extra_children


def observed_arg_types(folders: list[Path], components: dict, serializable: dict) -> None:
    """Record in each class entry (`seen`) argument types the configs use besides the default's.

    ppdet's constructors often accept more than their default suggests (`angle: [0, 90]`
    where the default is 0.0); validate must not flag what PaddleDetection's own configs do.
    """
    seen: dict[tuple[str, str], set] = {}

    def note(class_name: str, fields) -> None:
        if not isinstance(fields, dict):
            return
        for key, value in fields.items():
            seen.setdefault((class_name, key), set()).add(type_name(value))

    def walk(keys: tuple, value) -> None:
        if isinstance(value, Tagged):
            note(value.tag, value.value)
            walk(keys, value.value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(keys + (key,), item)
        elif isinstance(value, list):
            is_transforms = bool(keys) and str(keys[-1]).endswith("transforms")
            for item in value:
                if is_transforms and isinstance(item, dict) and len(item) == 1:
                    (op, op_args), = item.items()
                    note(str(op), op_args)
                walk(keys, item)

    for data in config_mappings(folders):
        for key, value in data.items():
            if key in components:
                note(key, value)
            walk((key,), value)
    for table in (components, serializable):
        for class_name, entry in table.items():
            extra = {}
            for arg, default_type in entry["args"].items():
                kinds = seen.get((class_name, arg), set()) - {None, default_type}
                if default_type == "bool":
                    kinds.discard("str")  # a string is never a flag ('Fasle' is a typo in 2.6's own configs)
                if kinds and default_type is not None:
                    extra[arg] = sorted(kinds)
            if extra:
                entry["seen"] = extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="PaddleDetection's configs folder (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    folders = [BUNDLED]
    if args.reference.is_dir():
        folders.append(args.reference)
    else:
        print(f"warning: {args.reference} not found; using the bundled configs only", file=sys.stderr)
    components, serializable, version = ppdet_classes()
    top_level, children = config_keys(folders, components)
    observed_arg_types(folders, components, serializable)
    schema = {
        "generated_by": "scripts/gen_ppdet_schema.py",
        "ppdet_version": version,
        "components": components,
        "serializable": serializable,
        "top_level": top_level,
        "children": children,
    }
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{args.out}: {len(components)} components, {len(serializable)} serializable classes, "
          f"{len(top_level)} top-level keys, {len(text) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
