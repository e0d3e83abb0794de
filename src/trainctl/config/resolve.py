"""Layered config resolution (`_BASE_`), `-o` overrides and provenance.

Merge semantics are PaddleDetection 2.6's (`ppdet.core.workspace.load_config`):
each file's `_BASE_` entries are resolved first, in order (paths relative to the
including file, `~` expanded), then the file itself. Because ppdet merges every
layer into one accumulating dict, the effect is a depth-first, post-order sequence of
merges: later files win, mappings are merged key by key, anything else (lists,
scalars, tagged values) is replaced whole. `filename` is set to the top file's stem.
"""

from __future__ import annotations

import re
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from trainctl.config import schema
from trainctl.config.locate import BUNDLED_DIR, find_config
from trainctl.config.yamlio import Tagged, load_yaml_file, load_yaml_text, yaml_lines
from trainctl.errors import UserError

BASE_KEY = "_BASE_"
FILENAME_SOURCE = "trainctl: filename (the config's stem, as ppdet sets it)"
OVERRIDE_SOURCE_PREFIX = "-o "  # a value set on the command line has the source "-o KEY=VALUE"
_MISSING = object()


@dataclass
class Layer:
    """One file of the `_BASE_` tree."""

    path: Path
    name: str
    bases: list["Layer"] = field(default_factory=list)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, "Layer"]]:
        yield depth, self
        for base in self.bases:
            yield from base.walk(depth + 1)


# ------------------------------------------------------------------ paths

def split_path(path: str | Iterable) -> list:
    if isinstance(path, str):
        if not path or any(part == "" for part in path.split(".")):
            raise UserError(f"bad key {path!r}", hint="use dotted keys such as TrainReader.batch_size")
        return path.split(".")
    return list(path)


def _child_key(node: Any, segment: Any) -> Any:
    """The actual key or index that `segment` (from a dotted path) names in `node`, or _MISSING."""
    if isinstance(node, Tagged):
        node = node.value
    if isinstance(node, dict):
        if segment in node:
            return segment
        if isinstance(segment, str):
            for convert in (int, float):
                try:
                    number = convert(segment)
                except ValueError:
                    continue
                if number in node:
                    return number
            lowered = {"true": True, "false": False, "null": None}.get(segment.lower(), _MISSING)
            if lowered is not _MISSING and lowered in node:
                return lowered
        return _MISSING
    if isinstance(node, list):
        try:
            index = int(segment)
        except (TypeError, ValueError):
            return _MISSING
        if -len(node) <= index < len(node):
            return index % len(node)
        return _MISSING
    return _MISSING


def _children(node: Any) -> Any:
    return node.value if isinstance(node, Tagged) else node


def format_path(keys: Iterable) -> str:
    return ".".join(str(k) for k in keys)


# ------------------------------------------------------------------ provenance

class Provenance:
    """Who set each key: records at the points where a value was replaced whole.

    The source of a key is the newest record at the key, below it, or (when the key
    itself was never replaced) at its nearest replaced ancestor.
    """

    def __init__(self) -> None:
        self._records: dict[tuple, tuple[int, str]] = {}
        self._seq = 0

    def record(self, keys: tuple, source: str) -> None:
        n = len(keys)
        for existing in [k for k in self._records if len(k) > n and k[:n] == keys]:
            del self._records[existing]
        self._seq += 1
        self._records[keys] = (self._seq, source)

    def source_of(self, keys: tuple) -> str | None:
        n = len(keys)
        best: tuple[int, str] | None = None
        for recorded, entry in self._records.items():
            if recorded[:n] == keys and (best is None or entry[0] > best[0]):
                best = entry
        if best is not None:
            return best[1]
        for cut in range(n - 1, 0, -1):
            if keys[:cut] in self._records:
                return self._records[keys[:cut]][1]
        return None

    def copy(self) -> "Provenance":
        other = Provenance()
        other._records = dict(self._records)
        other._seq = self._seq
        return other


# ------------------------------------------------------------------ loading and merging

def _merge(dst: dict, src: Mapping, keys: tuple, source: str, prov: Provenance) -> None:
    """ppdet's dict_merge, recording provenance: mappings merge, everything else replaces."""
    for key, value in src.items():
        if key in dst and isinstance(dst[key], dict) and isinstance(value, Mapping):
            _merge(dst[key], value, keys + (key,), source, prov)
        else:
            dst[key] = value
            prov.record(keys + (key,), source)


class _Loader:
    def __init__(self, top: Path):
        self.top_dir = Path(os.path.abspath(top)).parent
        self.merged: dict = {}
        self.prov = Provenance()

    def display(self, path: Path) -> str:
        absolute = Path(os.path.abspath(path))
        options = []
        rel = os.path.relpath(absolute, self.top_dir)
        if rel.count("..") <= 2:
            options.append(rel)
        try:
            options.append("configs/" + absolute.relative_to(BUNDLED_DIR).as_posix())
        except ValueError:
            pass
        options.append(str(absolute))
        return min(options, key=len)

    def load(self, path: Path, stack: list[Path], included_by: str | None) -> Layer:
        real = Path(os.path.realpath(path))
        name = self.display(path)
        if real in stack:
            chain = " -> ".join(self.display(p) for p in stack[stack.index(real):] + [real])
            raise UserError(f"_BASE_ cycle: {chain}", hint="remove one of these _BASE_ entries")
        data = load_yaml_file(path, origin=name)
        where = f"{name}" + (f" (a _BASE_ of {included_by})" if included_by else "")
        if data is None:
            raise UserError(f"config {where} is empty", hint="a config must be a YAML mapping of keys")
        if not isinstance(data, dict):
            raise UserError(f"config {where} is a {type(data).__name__}, not a mapping",
                            hint="a config must be a YAML mapping of keys")
        layer = Layer(Path(path), name)
        if BASE_KEY in data:
            bases = data.pop(BASE_KEY)
            if isinstance(bases, str) or not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
                raise UserError(f"{name}: _BASE_ must be a list of file names", hint="e.g. _BASE_: ['runtime.yml']")
            for entry in bases:
                base = os.path.expanduser(entry) if entry.startswith("~") else entry
                if not base.startswith("/"):
                    base = os.path.join(os.path.dirname(str(path)), base)
                if not os.path.isfile(base):
                    raise UserError(f"{name}: _BASE_ entry {entry!r} not found (looked for {base})",
                                    hint=f"fix the _BASE_ list in {name}")
                layer.bases.append(self.load(Path(base), stack + [real], name))
        _merge(self.merged, data, (), name, self.prov)
        return layer


def _copy_tree(value: Any) -> Any:
    """Deep copy that also breaks YAML aliases, so setting one key never changes another."""
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    if isinstance(value, Tagged):
        return Tagged(value.tag, _copy_tree(value.value))
    return value


# ------------------------------------------------------------------ the result

class ResolvedConfig:
    """A merged config with the provenance of every key and the `_BASE_` tree."""

    def __init__(self, data: dict, path: Path, layers: Layer, provenance: Provenance,
                 overrides: list[str] | None = None):
        self.data = data
        self.path = path
        self.layers = layers
        self.overrides = list(overrides or [])
        self._prov = provenance
        self._created: set[tuple] = set()  # mappings -o created: any key may go below them

    @property
    def name(self) -> str:
        return self.data.get("filename") or self.path.stem

    def _locate(self, path: str | Iterable) -> tuple | None:
        node: Any = self.data
        keys = []
        for segment in split_path(path):
            key = _child_key(node, segment)
            if key is _MISSING:
                return None
            keys.append(key)
            node = _children(node)[key]
        return tuple(keys)

    def has(self, path: str | Iterable) -> bool:
        return self._locate(path) is not None

    def get(self, path: str | Iterable, default: Any = None) -> Any:
        """The value at a dotted path ("a.0.b"; list items by index, tagged values see through)."""
        keys = self._locate(path)
        if keys is None:
            return default
        node: Any = self.data
        for key in keys:
            node = _children(node)[key]
        return node

    def set(self, path: str | Iterable, value: Any, source: str) -> None:
        """Set a value (creating missing mappings) and record `source` as its provenance."""
        segments = split_path(path)
        node: Any = self.data
        keys: list = []
        for i, segment in enumerate(segments):
            container = _children(node)
            key = _child_key(node, segment)
            last = i == len(segments) - 1
            if key is _MISSING:
                if not isinstance(container, dict):
                    raise KeyError(f"{format_path(keys + [segment])}: no such item")
                key = segment
                if not last:
                    container[key] = {}
            keys.append(key)
            if last:
                container[key] = value
            else:
                node = container[key]
        self._prov.record(tuple(keys), source)

    def source_of(self, path: str | Iterable) -> str | None:
        """Which file, `-o` override or trainctl adjustment set this key (or, for a mapping, last changed it)."""
        keys = self._locate(path)
        if keys is None:
            return None
        return self._prov.source_of(keys)

    def apply_override(self, text: str) -> None:
        apply_override(self, text)
        self.overrides.append(text)

    def lines(self) -> list[tuple[str, str | None]]:
        """The YAML text, line by line, with the source of each line's key."""
        return [(line, self._prov.source_of(keys) if keys else None) for line, keys in yaml_lines(self.data)]

    def to_yaml(self, provenance: bool = False) -> str:
        if not provenance:
            return "".join(line + "\n" for line, _ in self.lines())
        rows = self.lines()
        width = min(max((len(line) for line, _ in rows), default=0), 70)
        out = []
        for line, source in rows:
            out.append(f"{line.ljust(width)}  # {source}" if source else line)
        return "\n".join(out) + "\n"


# ------------------------------------------------------------------ overrides

def _suggest(wrong: str, candidates: Iterable) -> str:
    import difflib  # only on the error path

    names = sorted({str(c) for c in candidates})
    close = difflib.get_close_matches(str(wrong), names, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    if names and len(names) <= 12:
        return "keys here: " + ", ".join(names)
    return "see `trainctl config show -c CFG` for the keys"


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise UserError(f"override {text!r} has no '='", hint="write -o key=value, e.g. -o TrainReader.batch_size=4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"override {text!r} has no key", hint="write -o key=value, e.g. -o TrainReader.batch_size=4")
    value = load_yaml_text(raw, origin=f"-o {text}")
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(raw.strip()):
        # PyYAML (YAML 1.1) reads 1e-3 as text; on a command line it means the number
        value = float(raw)
    return split_path(key), value


_SCIENTIFIC = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")


_NUMBER_OR_BOOL = (bool, int, float)


def _check_override_type(text: str, path: str, old: Any, new: Any) -> None:
    """A number or flag the config holds cannot become text, a list or a mapping (`-o epoch=ten`).

    Only scalar numbers and booleans are checked: ppdet's configs legitimately put a
    list where a string was (or the reverse), and None ("unset") is always allowed.
    """
    if new is None or not isinstance(old, _NUMBER_OR_BOOL) or isinstance(new, _NUMBER_OR_BOOL):
        return
    kind = "bool" if isinstance(old, bool) else "int" if isinstance(old, int) else "float"
    if isinstance(new, str) and kind != "bool":
        try:
            float(new)
            hint = f"YAML reads {new!r} as text; write a plain number, e.g. -o {path}={old!r}"
            raise UserError(f"-o {text}: {path} expects {kind}, got the text {new!r}", hint=hint)
        except ValueError:
            pass
    raise UserError(f"-o {text}: {path} expects {kind} (the config has {old!r}), got {type(new).__name__} {new!r}",
                    hint=f"e.g. -o {path}={old!r}" if kind != "bool" else f"e.g. -o {path}={str(old).lower()}")


def apply_override(rc: ResolvedConfig, text: str) -> None:
    """Set one `-o key.sub=value`, checking each key against the config and ppdet's schema.

    A key that does not exist yet is accepted only where it is known (a top-level key
    the configs use or a registered component, a constructor argument of the component,
    tagged class or transform it sits in); below a mapping an override created (or that
    replaced an empty value), any key goes, in this and later overrides.
    """
    segments, value = parse_override(text)
    source = f"{OVERRIDE_SOURCE_PREFIX}{text}"
    node: Any = rc.data
    keys: list = []
    created = False
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        container = _children(node)
        here = format_path(keys) or "the top level"
        if isinstance(container, list):
            try:
                index = int(segment)
            except ValueError:
                raise UserError(f"-o {text}: {here} is a list; address its items by index",
                                hint=f"e.g. {format_path(keys + [0])}") from None
            if not -len(container) <= index < len(container):
                raise UserError(f"-o {text}: index {index} out of range for {here} ({len(container)} items)",
                                hint=f"use 0..{len(container) - 1}" if container else "the list is empty")
            key: Any = index % len(container)
        elif isinstance(container, dict):
            key = _child_key(container, segment)
            if key is _MISSING:
                if not created:
                    tag = node.tag if isinstance(node, Tagged) else None
                    known = schema.known_keys_at(tuple(keys), tag)
                    if segment not in known:
                        raise UserError(f"-o {text}: unknown key {format_path(keys + [segment])}",
                                        hint=_suggest(segment, set(map(str, container)) | known))
                key = segment
                if not last:
                    container[key] = {}
                    created = True
                    rc._created.add(tuple(keys) + (key,))
        else:
            raise UserError(f"-o {text}: {here} holds {type(container).__name__} {container!r}, not a mapping or list",
                            hint=f"set {here} itself: -o {here}=...")
        keys.append(key)
        if last:
            if not created and (isinstance(container, list) or key in container):
                _check_override_type(text, format_path(keys), container[key], value)
            container[key] = value
        else:
            if container[key] is None:  # `regularizer:` left empty in a file: a mapping may go there
                container[key] = {}
                rc._created.add(tuple(keys))
            created = created or tuple(keys) in rc._created
            node = container[key]
    rc._prov.record(tuple(keys), source)


# ------------------------------------------------------------------ entry point

def resolve(path_or_name: str | os.PathLike, overrides: Iterable[str] = ()) -> ResolvedConfig:
    """Resolve a config file or bundled config name, then apply `-o` overrides in order."""
    path = find_config(path_or_name)
    loader = _Loader(path)
    layers = loader.load(path, [], None)
    data = _copy_tree(loader.merged)
    data["filename"] = os.path.splitext(os.path.basename(str(path)))[0]
    loader.prov.record(("filename",), FILENAME_SOURCE)
    rc = ResolvedConfig(data, Path(path), layers, loader.prov)
    for text in overrides:
        rc.apply_override(text)
    return rc
