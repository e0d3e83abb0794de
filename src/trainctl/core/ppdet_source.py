"""Which ppdet a run uses: one rule for every command, worker and host (pure; no paddle, no ppdet).

The rule, first match wins:

  1. `--ppdet DIR`                 a PaddleDetection checkout (DIR/ppdet/__init__.py)
  2. `TRAINCTL_PPDET=DIR`          the same, from the environment
  3. a checkout that contains the current directory (walking up: a directory with
     ppdet/__init__.py and configs/ or setup.py), as PaddleDetection's tools/ do
  4. the installed paddledet wheel (site-packages, never the current directory)

`choose()` applies it and describes the result (kind, directory, version and commit,
read from the tree's files without importing it). Workers get the choice through
`worker_env()` (the tree first on PYTHONPATH, PYTHONSAFEPATH=1 so Python >= 3.11 puts
no working directory on sys.path) and `activate()` in their own entry (which also drops
the working directory on 3.10), then `verify()` that `ppdet.__file__` is where the rule
said. The pre-launch checks of the chosen tree (modules it lacks, config classes it does
not have) are `trainctl.core.ppdet_checks`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from trainctl.errors import UserError

ENV_VAR = "TRAINCTL_PPDET"
DIST_NAME = "paddledet"

@dataclass(frozen=True)
class PpdetSource:
    kind: str  # "source" (a checkout), "installed" (the wheel) or "missing"
    dir: str | None  # the checkout root, or the site-packages directory holding ppdet/
    rule: str  # which part of the rule chose it
    version: str | None = None
    version_from: str | None = None  # the file the version was read from
    commit: str | None = None
    commit_from: str | None = None

    @property
    def package_dir(self) -> str | None:
        return os.path.join(self.dir, "ppdet") if self.dir else None

    @property
    def identity(self) -> str:
        """What must agree across hosts: kind, version and commit."""
        return f"{self.kind} {self.version or '?'}" + (f" {self.commit[:12]}" if self.commit else "")

    def short(self) -> str:
        if self.kind == "source":
            return f"ppdet from source {self.dir}"
        if self.kind == "installed":
            return f"{DIST_NAME} {self.version}, installed"
        return "no ppdet"

    def describe(self) -> str:
        if self.kind == "missing":
            return "none: no PaddleDetection checkout here and paddledet is not installed"
        commit = f", commit {self.commit[:12]}" if self.commit else ""
        if self.kind == "installed":
            return f"{DIST_NAME} {self.version}, installed ({self.dir}){commit}"
        version = f"ppdet {self.version}" if self.version else "ppdet (version unknown)"
        read = f" ({self.version_from})" if self.version_from else ""
        return f"{version}{read} from source {self.dir}{commit}; chosen by {self.rule}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "dir": self.dir, "rule": self.rule, "version": self.version,
                "version_from": self.version_from, "commit": self.commit, "commit_from": self.commit_from,
                "description": self.describe()}

    @classmethod
    def from_dict(cls, data: dict) -> "PpdetSource":
        return cls(**{k: data.get(k) for k in ("kind", "dir", "rule", "version", "version_from", "commit",
                                                "commit_from")})


# ---------------------------------------------------------------- the rule


def is_checkout(path: str | os.PathLike, strict: bool = True) -> bool:
    """A PaddleDetection tree: ppdet/__init__.py, and (strict) configs/ or setup.py beside it."""
    p = Path(path)
    if not (p / "ppdet" / "__init__.py").is_file():
        return False
    return not strict or (p / "configs").is_dir() or (p / "setup.py").is_file()


def find_checkout(cwd: str) -> str | None:
    """The nearest directory at or above `cwd` that is a PaddleDetection checkout."""
    p = Path(cwd).resolve()
    for candidate in (p, *p.parents):
        if is_checkout(candidate):
            return str(candidate)
    return None


def choose(flag: str | None = None, environ: dict | None = None, cwd: str | None = None,
           search_path: list[str] | None = None) -> PpdetSource:
    """Apply the rule. A --ppdet or TRAINCTL_PPDET that is not a checkout is a UserError."""
    environ = os.environ if environ is None else environ
    cwd = cwd or os.getcwd()
    for given, rule in ((flag, "--ppdet"), (environ.get(ENV_VAR) or None, ENV_VAR)):
        if given:
            path = Path(cwd, os.path.expanduser(given)).resolve()
            if not is_checkout(path, strict=False):
                raise UserError(f"{rule} {given}: {path} is not a PaddleDetection checkout (no ppdet/__init__.py in it)",
                                hint="give the directory you cloned PaddleDetection into, the one holding ppdet/")
            return _source(str(path), rule)
    found = find_checkout(cwd)
    if found:
        return _source(found, "the checkout containing the current directory")
    return installed(cwd, search_path)


def _source(root: str, rule: str) -> PpdetSource:
    version, version_from = tree_version(root)
    commit, commit_from = tree_commit(root)
    return PpdetSource("source", root, rule, version, version_from, commit, commit_from)


def installed(cwd: str | None = None, search_path: list[str] | None = None) -> PpdetSource:
    """The paddledet wheel as a worker sees it: first ppdet/ on sys.path, the working directory left out."""
    cwd = os.path.realpath(cwd or os.getcwd())
    rule = "the installed wheel (no checkout chosen)"
    paths = search_path if search_path is not None else sys.path
    for entry in paths:
        if not entry or os.path.realpath(entry) == cwd:
            continue
        if os.path.isfile(os.path.join(entry, "ppdet", "__init__.py")):
            version, version_from = _dist_info_version(entry)
            if version is None and is_checkout(entry):  # a checkout the user put on PYTHONPATH
                return _source(os.path.realpath(entry), "a checkout on sys.path (PYTHONPATH)")
            if version is None:
                version, version_from = _read_version_py(Path(entry, "ppdet", "version.py"), "ppdet/version.py")
            commit = _version_py_commit(Path(entry, "ppdet", "version.py"))
            return PpdetSource("installed", entry, rule, version, version_from, commit,
                               "ppdet/version.py" if commit else None)
    return PpdetSource("missing", None, rule)


def _dist_info_version(site: str) -> tuple[str | None, str | None]:
    try:
        names = os.listdir(site)
    except OSError:
        return None, None
    for name in names:
        if name.lower().startswith(DIST_NAME + "-") and name.endswith(".dist-info"):
            return name[len(DIST_NAME) + 1:-len(".dist-info")], name
    return None, None


_QUOTED = r"""\s*=\s*['"]([^'"]*)['"]"""


def _read_version_py(path: Path, label: str) -> tuple[str | None, str | None]:
    text = read_text(path)
    m = re.search(r"^full_version" + _QUOTED, text, re.M) if text else None
    return (m.group(1), label) if m else (None, None)


def _version_py_commit(path: Path) -> str | None:
    text = read_text(path)
    m = re.search(r"^commit" + _QUOTED, text, re.M) if text else None
    return m.group(1) if m and re.fullmatch(r"[0-9a-f]{7,40}", m.group(1)) else None


def read_text(path: Path) -> str:
    """A tree file's text, or "" when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def tree_version(root: str) -> tuple[str | None, str | None]:
    """(version, what it was read from): a VERSION file, ppdet/version.py (written by
    `pip install -e`/`setup.py`), else setup.py's PPDET_VERSION (0.0.0 in unreleased trees)."""
    text = read_text(Path(root, "VERSION")).strip()
    if text:
        return text.split()[0], "VERSION"
    version, label = _read_version_py(Path(root, "ppdet", "version.py"), "ppdet/version.py")
    if version and version != "0.0.0":
        return version, label
    m = re.search(r"^PPDET_VERSION" + _QUOTED, read_text(Path(root, "setup.py")), re.M)
    if m:
        return m.group(1), "setup.py PPDET_VERSION"
    return version, label


def tree_commit(root: str) -> tuple[str | None, str | None]:
    """(commit, where from): a COMMIT file, .git's HEAD (read as files), or ppdet/version.py."""
    text = read_text(Path(root, "COMMIT")).strip()
    if re.fullmatch(r"[0-9a-f]{7,40}", text):
        return text, "COMMIT"
    git = Path(root, ".git")
    if git.is_file():  # a worktree: "gitdir: PATH"
        m = re.match(r"gitdir:\s*(.+)", read_text(git).strip())
        git = Path(root, m.group(1)) if m else git
    head = read_text(git / "HEAD").strip()
    if head.startswith("ref:"):
        ref = head[4:].strip()
        value = read_text(git / ref).strip()
        if not value:
            for line in read_text(git / "packed-refs").splitlines():
                if line.endswith(" " + ref):
                    value = line.split()[0]
        if value:
            return value, f".git ({ref})"
    elif re.fullmatch(r"[0-9a-f]{40}", head):
        return head, ".git HEAD"
    commit = _version_py_commit(Path(root, "ppdet", "version.py"))
    return (commit, "ppdet/version.py") if commit else (None, None)


# ---------------------------------------------------------------- workers


def worker_env(src: PpdetSource, environ: dict) -> dict[str, str]:
    """Variables that make a worker import exactly `src`: no working directory on sys.path
    (PYTHONSAFEPATH, Python >= 3.11; the worker entry drops it itself on 3.10), the tree first."""
    env = {"PYTHONSAFEPATH": "1"}
    if src.kind == "source" and src.dir:
        rest = environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = src.dir + (os.pathsep + rest if rest else "")
    return env


def activate(src: PpdetSource, cwd: str | None = None) -> None:
    """In this process, before `import ppdet`: drop the working directory from sys.path
    (what `python -m` and `python -c` put first) and put a checkout first."""
    if "ppdet" in sys.modules:
        verify(src)
        return
    here = os.path.realpath(cwd or os.getcwd())
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != here]
    if src.kind == "source" and src.dir:
        sys.path[:] = [src.dir] + [p for p in sys.path if os.path.realpath(p) != os.path.realpath(src.dir)]
    import importlib

    importlib.invalidate_caches()


def verify(src: PpdetSource) -> None:
    """After `import ppdet`: it came from where the rule said, or a clear error."""
    module = sys.modules.get("ppdet")
    where = os.path.realpath(getattr(module, "__file__", "") or "")
    expected = src.package_dir and os.path.realpath(src.package_dir)
    if expected and where.startswith(expected + os.sep):
        return
    from trainctl.errors import RuntimeFailure

    raise RuntimeFailure(f"ppdet was imported from {os.path.dirname(where) or '?'}, not from the chosen "
                         f"{src.describe()}", hint="run with a clean PYTHONPATH, or pass --ppdet DIR")


def ensure_available(src: PpdetSource) -> None:
    """No ppdet at all: a UserError naming both ways to get one."""
    if src.kind == "missing":
        raise UserError("no ppdet to run: paddledet is not installed and no PaddleDetection checkout was chosen",
                        hint="pip install paddledet==2.6.0, or pass --ppdet DIR (a checkout), or run inside one")
