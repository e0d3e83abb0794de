"""Finding a config: a path as given, or a name among the configs bundled with trainctl."""

from __future__ import annotations

from pathlib import Path

from trainctl.errors import UserError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "configs"
_SUFFIXES = (".yml", ".yaml")


def bundled_configs() -> list[str]:
    """Names of the bundled configs relative to the bundled directory, e.g. 'optimizers/optimizer_40e.yml'."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(
        p.relative_to(BUNDLED_DIR).as_posix()
        for p in BUNDLED_DIR.rglob("*")
        if p.suffix in _SUFFIXES and p.is_file()
    )


def find_config(name: str | Path) -> Path:
    """An existing path is used as given; otherwise `name` is looked up among the bundled configs.

    `roadsign`, `roadsign.yml` and `optimizers/optimizer_40e.yml` all work.
    """
    given = Path(str(name)).expanduser()
    if given.is_file():
        return given
    if given.is_dir():
        raise UserError(f"config {name} is a directory", hint="pass a .yml file")
    text = str(name)
    candidates = [text] if text.endswith(_SUFFIXES) else [text + ".yml", text + ".yaml", text]
    for candidate in candidates:
        path = BUNDLED_DIR / candidate
        if path.is_file():
            return path
    import difflib  # only for a name that was not found: did-you-mean

    names = bundled_configs()
    wanted = text if text.endswith(_SUFFIXES) else text + ".yml"
    close = difflib.get_close_matches(wanted, names, n=4, cutoff=0.6)
    by_file_name = {Path(n).name: n for n in names}
    for match in difflib.get_close_matches(Path(wanted).name, list(by_file_name), n=4, cutoff=0.6):
        if by_file_name[match] not in close:
            close.append(by_file_name[match])
    top_level = [n for n in names if "/" not in n]
    if close:
        hint = "did you mean " + ", ".join(close[:4]) + "?"
    elif top_level:
        hint = "bundled configs: " + ", ".join(top_level)
    else:
        hint = "pass the path of a .yml file"
    raise UserError(f"config not found: {name} (neither a file nor a bundled config)", hint=hint)
