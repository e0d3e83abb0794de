"""How a command was called, as plain data: the engines below the CLI (the ssh fan-out,
`trainctl smoke`'s stages) read this instead of click's context.

Built from click's context by `trainctl.cli.forward.given_flags`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class GivenFlags:
    params: Mapping[str, Any]  # every parameter's value, defaults included
    # (option name, its command-line words) for every option the user gave, or a repeatable one
    # the command filled itself (ppdet-style `-o a=1 b=2`), in the command's order
    words: tuple[tuple[str, tuple[str, ...]], ...]
    given: frozenset[str]  # the options given on the command line or from the environment

    def was_given(self, name: str) -> bool:
        return name in self.given
