"""Reading and writing PaddleDetection YAML without paddle.

PaddleDetection's configs use local tags (`!PiecewiseDecay`, `!COCODataSet`, ...)
that ppdet turns into objects while loading. trainctl keeps them as data,
`Tagged(tag, value)`, and writes them back with the same tag, so ppdet reads
the written file to the same objects.

Loading uses libyaml's CSafeLoader when PyYAML was built with it (several times
faster than the pure-Python loader; `--dry-run` resolves a config on every call).
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from trainctl.errors import UserError

__all__ = ["Tagged", "load_yaml_file", "load_yaml_text", "dump_yaml", "yaml_lines", "format_scalar"]


class Tagged:
    """A YAML node with a local tag (`!Name`), kept as data instead of constructed.

    `tag` is the name without the leading `!`; `value` is the node's mapping,
    list or scalar.
    """

    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: Any):
        self.tag = tag[1:] if tag.startswith("!") else tag
        self.value = value

    @property
    def yaml_tag(self) -> str:
        return "!" + self.tag

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tagged):
            return NotImplemented
        return self.tag == other.tag and self.value == other.value

    def __hash__(self) -> int:  # values are usually dicts; hash by tag only
        return hash(self.tag)

    def __repr__(self) -> str:
        return f"Tagged({self.tag!r}, {self.value!r})"


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that keeps every `!Name` local tag as a `Tagged` value."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.MappingNode):
        value: Any = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Tagged(node.tag, value)


# Local tags start with "!"; standard ones are expanded to "tag:yaml.org,2002:..." and never match.
_Loader.add_multi_constructor("!", _construct_tagged)


def _yaml_error(origin: str, exc: yaml.YAMLError) -> UserError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark is not None else origin
    return UserError(f"{where}: invalid YAML: {problem}", hint="fix the YAML syntax at that line")


def load_yaml_text(text: str, origin: str = "<string>") -> Any:
    """Parse YAML text; a syntax error becomes a UserError naming origin:line:column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _yaml_error(origin, exc) from exc


def load_yaml_file(path: str | Path, origin: str | None = None) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError(f"config file not found: {path}") from exc
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        hint = "save it as UTF-8" if isinstance(exc, UnicodeDecodeError) else "pass a readable .yml file"
        raise UserError(f"cannot read config {path}: {exc}", hint=hint) from exc
    return load_yaml_text(text, origin or str(path))


# ---------------------------------------------------------------- writing

def _float_text(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    # YAML 1.1 (PyYAML's resolver) only reads a float when it has a dot: 1e-05 -> 1.0e-05
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    elif "." not in text:
        text += ".0"
    return text


@functools.lru_cache(maxsize=4096)
def _str_text(value: str) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True)
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    text = text.rstrip("\n")
    if any(char in text for char in "\n\r\x85\u2028\u2029"):  # would span lines: one double-quoted line
        text = _double_quoted(value)
    return text


def _double_quoted(value: str) -> str:
    """A JSON string is a valid YAML double-quoted scalar; YAML also breaks lines at NEL, LS and PS."""
    import json  # rare: only strings that would span lines

    text = json.dumps(value, ensure_ascii=False)
    for char in ("\x85", "\u2028", "\u2029"):
        text = text.replace(char, "\\u%04x" % ord(char))
    return text


def format_scalar(value: Any) -> str:
    """One scalar as YAML text that reads back as the same value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _float_text(float(value))
    if isinstance(value, str):
        return _str_text(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as YAML: {value!r}")


def _is_flow_leaf(value: Any) -> bool:
    """Scalars and (nested) lists of plain scalars are written on one line: [320, 320]."""
    if isinstance(value, list):
        return all(_is_flow_leaf(item) for item in value)
    if isinstance(value, dict):
        return not value
    return not isinstance(value, Tagged)


_SAFE_IN_FLOW = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./ -]*")


def _flow_str(value: str) -> str:
    """A string inside [...]: plain when that is unambiguous, else one double-quoted line."""
    if _SAFE_IN_FLOW.fullmatch(value) and not value.endswith(" ") and _str_text(value) == value:
        return value
    return _double_quoted(value)


def _flow(value: Any, nested: bool = False) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item, nested=True) for item in value) + "]"
    if isinstance(value, dict):
        return "{}"
    if nested and isinstance(value, str):
        return _flow_str(value)
    return format_scalar(value)


Line = tuple[str, tuple]


def _mapping_lines(mapping: dict, path: tuple, indent: int) -> Iterator[Line]:
    pad = " " * indent
    for key, value in mapping.items():
        if isinstance(key, (dict, list, Tagged)):
            raise TypeError(f"cannot write a {type(key).__name__} as a YAML key")
        yield from _value_lines(f"{pad}{format_scalar(key)}:", value, path + (key,), indent)


def _value_lines(head: str, value: Any, path: tuple, indent: int) -> Iterator[Line]:
    """Lines for `value` whose first line starts with `head` (a "key:" or "-")."""
    if isinstance(value, Tagged):
        inner = value.value
        if isinstance(inner, dict) and inner:
            yield f"{head} {value.yaml_tag}", path
            yield from _mapping_lines(inner, path, indent + 2)
        elif isinstance(inner, list) and not _is_flow_leaf(inner):
            yield f"{head} {value.yaml_tag}", path
            yield from _sequence_lines(inner, path, indent + 2)
        elif isinstance(inner, (dict, list)):
            yield f"{head} {value.yaml_tag} {_flow(inner)}", path
        else:  # a tagged scalar is loaded as its text, so it is written as text
            yield f"{head} {value.yaml_tag} {_str_text('' if inner is None else str(inner))}", path
        return
    if _is_flow_leaf(value):
        yield f"{head} {_flow(value)}", path
        return
    yield head, path
    if isinstance(value, dict):
        yield from _mapping_lines(value, path, indent + 2)
    else:  # a list holding mappings, tagged values or nested lists: block style
        yield from _sequence_lines(value, path, indent)


def _sequence_lines(items: list, path: tuple, indent: int) -> Iterator[Line]:
    pad = " " * indent
    for index, item in enumerate(items):
        child = path + (index,)
        if isinstance(item, dict) and item:
            lines = list(_mapping_lines(item, child, indent + 2))
            first, first_path = lines[0]
            yield pad + "- " + first[indent + 2:], first_path
            yield from lines[1:]
        elif isinstance(item, list) and not _is_flow_leaf(item):
            lines = list(_sequence_lines(item, child, indent + 2))
            first, first_path = lines[0]
            yield pad + "- " + first[indent + 2:], first_path
            yield from lines[1:]
        else:
            yield from _value_lines(pad + "-", item, child, indent)


def yaml_lines(data: dict) -> list[Line]:
    """The YAML text of a mapping as (line, path) pairs; path is the key tuple the line writes."""
    if not isinstance(data, dict):
        raise TypeError("only a mapping can be written as a config")
    return list(_mapping_lines(data, (), 0))


def dump_yaml(data: dict) -> str:
    """YAML text that ppdet's load_config (tags re-emitted) and trainctl read back to equal data."""
    return "".join(line + "\n" for line, _ in yaml_lines(data))
