"""Static checks of a resolved config against what PaddleDetection knows (no paddle needed).

Reports keys ppdet would not use (with a did-you-mean) and values whose type cannot
be what the key expects. Types come from constructor defaults and from the types the
reference configs use; the check is deliberately lenient where ppdet is (an int where
a float is expected, a scalar where a list default exists, None anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from trainctl.config import schema
from trainctl.config.resolve import ResolvedConfig, format_path
from trainctl.config.yamlio import Tagged

# keys trainctl or ppdet's tools add to a config at run time
_RUNTIME_KEYS = {"filename"}


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f"; {self.hint}" if self.hint else "")


def _did_you_mean(wrong: str, candidates: Iterable[str]) -> str:
    import difflib  # only when a key is unknown

    close = difflib.get_close_matches(wrong, sorted(set(candidates)), n=3, cutoff=0.6)
    return ("did you mean " + " or ".join(close) + "?") if close else ""


def _kind(value: Any) -> str:
    if isinstance(value, Tagged):
        return "!" + value.tag
    return schema.type_name(value) or type(value).__name__


# expected type -> kinds of values that are certainly wrong for it. Top-level types come
# from what the configs use (strict); argument types from constructor defaults, which
# ppdet's code often accepts in other shapes (a float where the default is a list,
# False for "no regularizer"), so only clear mismatches count there.
_INCOMPATIBLE_TOP = {
    "int": {"str", "list", "dict", "bool"},
    "float": {"str", "list", "dict", "bool"},
    "bool": {"str", "float", "list", "dict"},
    "str": {"list", "dict"},
    "list": {"str", "bool", "dict"},
    "dict": {"str", "int", "float", "bool", "list"},
}
_INCOMPATIBLE_ARG = {
    "int": {"str", "dict", "bool", "list"},
    "float": {"str", "dict", "bool", "list"},
    "bool": {"str", "list", "dict"},
    "str": {"list", "dict"},
    "list": {"dict", "bool"},
    "dict": {"str", "int", "float", "list"},
}


def _type_problem(path: str, expected: str | None, value: Any, strict: bool = False) -> Problem | None:
    if expected is None or value is None:
        return None
    kind = _kind(value)
    if kind in (_INCOMPATIBLE_TOP if strict else _INCOMPATIBLE_ARG).get(expected, ()):
        if expected == "bool" and kind == "int" and value in (0, 1):
            return None
        return Problem(path, f"expects {expected}, got {kind} {value!r}")
    return None


class _Checker:
    def __init__(self) -> None:
        self.schema = schema.load_schema()
        self.problems: list[Problem] = []

    def class_entry(self, name: str) -> dict | None:
        return self.schema["components"].get(name) or self.schema["serializable"].get(name)

    def check_fields(self, keys: tuple, class_name: str, fields: dict, extra: Iterable[str] = ()) -> None:
        entry = self.class_entry(class_name)
        if entry is None:
            return
        args = entry["args"]
        allowed = set(args) | set(extra)
        for key, value in fields.items():
            path = format_path(keys + (key,))
            if key not in allowed:
                if entry.get("kwargs") and not extra:
                    continue  # takes **kwargs and no config tells us more
                self.problems.append(Problem(path, f"unknown key for {class_name}",
                                             _did_you_mean(str(key), allowed)))
                continue
            problem = _type_problem(path, args.get(key), value)
            if problem and _kind(value) in entry.get("seen", {}).get(key, ()):
                problem = None  # PaddleDetection's own configs give this argument such values
            if problem:
                self.problems.append(problem)
            self.check_value(keys + (key,), value)

    def check_tagged(self, keys: tuple, value: Tagged) -> None:
        path = format_path(keys)
        if self.class_entry(value.tag) is None:
            names = list(self.schema["serializable"]) + list(self.schema["components"])
            self.problems.append(Problem(path, f"unknown tag !{value.tag}", _did_you_mean(value.tag, names)))
        elif isinstance(value.value, dict):
            self.check_fields(keys, value.tag, value.value)

    def check_transforms(self, keys: tuple, items: list) -> None:
        ops = self.schema["serializable"]
        for index, item in enumerate(items):
            path = format_path(keys + (index,))
            if isinstance(item, Tagged):
                self.check_tagged(keys + (index,), item)
                continue
            if not (isinstance(item, dict) and len(item) == 1):
                self.problems.append(Problem(path, "a transform must be a one-key mapping {Name: {args}}"))
                continue
            (op, op_args), = item.items()
            if op not in ops:
                self.problems.append(Problem(format_path(keys + (index, op)), "unknown transform",
                                             _did_you_mean(str(op), ops)))
            elif isinstance(op_args, dict):
                self.check_fields(keys + (index, op), op, op_args)
            elif op_args is not None:
                self.problems.append(Problem(format_path(keys + (index, op)),
                                             f"transform arguments must be a mapping, got {_kind(op_args)}"))

    def check_value(self, keys: tuple, value: Any) -> None:
        """Look inside values for tagged objects and transform lists."""
        if isinstance(value, Tagged):
            self.check_tagged(keys, value)
        elif isinstance(value, list):
            if keys and str(keys[-1]).endswith("transforms"):
                self.check_transforms(keys, value)
            else:
                for index, item in enumerate(value):
                    if isinstance(item, (Tagged, list, dict)):
                        self.check_value(keys + (index,), item)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (Tagged, list, dict)):
                    self.check_value(keys + (key,), item)

    def check_trainctl_section(self, value: Any) -> None:
        if not isinstance(value, dict):
            self.problems.append(Problem(schema.TRAINCTL_SECTION, f"should be a mapping, not {_kind(value)}"))
            return
        for key, item in value.items():
            path = f"{schema.TRAINCTL_SECTION}.{key}"
            expected = schema.TRAINCTL_KEYS.get(key)
            if expected is None:
                self.problems.append(Problem(path, "unknown trainctl key", _did_you_mean(str(key), schema.TRAINCTL_KEYS)))
            elif expected == "int" and (isinstance(item, bool) or not isinstance(item, int) or item < 1):
                self.problems.append(Problem(path, f"should be a whole number >= 1, not {item!r}"))

    def check(self, data: dict) -> list[Problem]:
        top_level = self.schema["top_level"]
        components = self.schema["components"]
        known_top = set(top_level) | set(components) | _RUNTIME_KEYS
        for key, value in data.items():
            path = str(key)
            if key in _RUNTIME_KEYS:
                continue
            if key == schema.TRAINCTL_SECTION:
                self.check_trainctl_section(value)
                continue
            if key not in known_top:
                self.problems.append(Problem(path, "unknown top-level key", _did_you_mean(path, known_top)))
                self.check_value((key,), value)
                continue
            problem = _type_problem(path, top_level.get(key), value, strict=True)
            if problem:
                self.problems.append(problem)
                continue
            if key in components and isinstance(value, dict):
                self.check_fields((key,), key, value, extra=self.schema["children"].get(key, ()))
            else:
                self.check_value((key,), value)
        return self.problems


def validate(rc: ResolvedConfig | dict) -> list[Problem]:
    """Problems in a resolved config; an empty list when it is clean."""
    data = rc.data if isinstance(rc, ResolvedConfig) else rc
    if not schema.load_schema()["components"]:
        return [Problem("(schema)", "ppdet_schema.json is missing; cannot validate",
                        "regenerate it with scripts/gen_ppdet_schema.py")]
    return _Checker().check(data)
