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
said. `missing_modules()` is the pre-launch check: a static scan of the modules
`import ppdet` executes for their top-level third-party imports, cached per tree.
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

# requirement name (lower case) -> module it provides, where they differ
PACKAGE_MODULES = {
    "opencv-python": "cv2", "opencv-python-headless": "cv2", "opencv-contrib-python": "cv2", "pyyaml": "yaml",
    "pillow": "PIL", "scikit-learn": "sklearn", "scikit-image": "skimage", "lapx": "lap", "shapely": "shapely",
    "paddlepaddle": "paddle", "paddlepaddle-gpu": "paddle", "pycocotools": "pycocotools",
}


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
    text = _read(path)
    m = re.search(r"^full_version" + _QUOTED, text, re.M) if text else None
    return (m.group(1), label) if m else (None, None)


def _version_py_commit(path: Path) -> str | None:
    text = _read(path)
    m = re.search(r"^commit" + _QUOTED, text, re.M) if text else None
    return m.group(1) if m and re.fullmatch(r"[0-9a-f]{7,40}", m.group(1)) else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def tree_version(root: str) -> tuple[str | None, str | None]:
    """(version, what it was read from): a VERSION file, ppdet/version.py (written by
    `pip install -e`/`setup.py`), else setup.py's PPDET_VERSION (0.0.0 in unreleased trees)."""
    text = _read(Path(root, "VERSION")).strip()
    if text:
        return text.split()[0], "VERSION"
    version, label = _read_version_py(Path(root, "ppdet", "version.py"), "ppdet/version.py")
    if version and version != "0.0.0":
        return version, label
    m = re.search(r"^PPDET_VERSION" + _QUOTED, _read(Path(root, "setup.py")), re.M)
    if m:
        return m.group(1), "setup.py PPDET_VERSION"
    return version, label


def tree_commit(root: str) -> tuple[str | None, str | None]:
    """(commit, where from): a COMMIT file, .git's HEAD (read as files), or ppdet/version.py."""
    text = _read(Path(root, "COMMIT")).strip()
    if re.fullmatch(r"[0-9a-f]{7,40}", text):
        return text, "COMMIT"
    git = Path(root, ".git")
    if git.is_file():  # a worktree: "gitdir: PATH"
        m = re.match(r"gitdir:\s*(.+)", _read(git).strip())
        git = Path(root, m.group(1)) if m else git
    head = _read(git / "HEAD").strip()
    if head.startswith("ref:"):
        ref = head[4:].strip()
        value = _read(git / ref).strip()
        if not value:
            for line in _read(git / "packed-refs").splitlines():
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


# ---------------------------------------------------------------- the pre-launch import check

_IMPORT = re.compile(r"^(?:import\s+(?P<mods>[\w. ,]+)|from\s+(?P<base>\.*[\w.]*)\s+import\s+"
                     r"(?P<names>\([^)]*\)|[^\n#]*(?:\\\n[^\n#]*)*))", re.M)
_CACHE_FORMAT = "trainctl-ppdet-scan 1"


def scan_imports(package_dir: str) -> list[str]:
    """Third-party top-level modules that `import ppdet` imports, by a static walk.

    From ppdet/__init__.py, follows the package's own imports written at column 0 (what a
    module runs when imported; imports indented in try/except or functions are optional or
    lazy) and collects the third-party names those modules import at column 0."""
    root = Path(package_dir)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    seen: set[Path] = set()
    todo = [root / "__init__.py"]
    found: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        package = path.parent.relative_to(root.parent).parts  # ("ppdet", "core", ...)
        for m in _IMPORT.finditer(_read(path)):
            if m.group("mods"):
                targets = [(name.split(" as ")[0].strip(), ()) for name in m.group("mods").split(",")]
            else:
                names = re.sub(r"[()\\\n]", " ", m.group("names"))
                targets = [(m.group("base"), tuple(n.split(" as ")[0].strip() for n in names.split(",") if n.strip()))]
            for module, names in targets:
                parts = _absolute(module, package)
                if not parts:
                    continue
                if parts[0] != root.name:
                    if parts[0] not in stdlib:
                        found.add(parts[0])
                    continue
                for depth in range(1, len(parts) + 1):  # ppdet, ppdet.a, ppdet.a.b: each __init__ runs
                    todo.append(_module_file(root.parent, parts[:depth]))
                for name in names:
                    todo.append(_module_file(root.parent, parts + (name,)))
    return sorted(found)


def _absolute(module: str, package: tuple[str, ...]) -> tuple[str, ...]:
    dots = len(module) - len(module.lstrip("."))
    rest = tuple(p for p in module[dots:].split(".") if p)
    if not dots:
        return rest
    base = package[:len(package) - (dots - 1)] if dots - 1 <= len(package) else ()
    return base + rest if base else ()


def _module_file(base: Path, parts: tuple[str, ...]) -> Path:
    package = base.joinpath(*parts)
    return package / "__init__.py" if package.is_dir() else package.with_suffix(".py")


def _fingerprint(package_dir: str) -> str:
    """Changes when any .py file of the package is added, removed or edited."""
    total, count = 0, 0
    for dirpath, _, files in os.walk(package_dir):
        for name in files:
            if name.endswith(".py"):
                st = os.stat(os.path.join(dirpath, name))
                total += st.st_mtime_ns ^ st.st_size
                count += 1
    return f"{os.path.realpath(package_dir)} {count} {total}"


def _cache_file(key: str) -> Path:
    import hashlib

    root = os.environ.get("TRAINCTL_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "trainctl"
    return base / "ppdet-imports" / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".txt")


def _wheel_fingerprint(src: PpdetSource) -> str | None:
    """An installed wheel changes only with its dist-info's RECORD (pip rewrites it): one stat, not a walk."""
    if src.kind != "installed" or not (src.version_from or "").endswith(".dist-info"):
        return None
    try:
        st = os.stat(os.path.join(src.dir or "", src.version_from or "", "RECORD"))
    except OSError:
        return None
    return f"{os.path.realpath(src.package_dir or '')} RECORD {st.st_mtime_ns} {st.st_size}"


def third_party_imports(package_dir: str, key: str | None = None) -> list[str]:
    """scan_imports, cached per tree (keyed on its path and its .py files' sizes and times, or `key`)."""
    key = key or _fingerprint(package_dir)
    cache = _cache_file(key)
    lines = _read(cache).splitlines()
    if len(lines) >= 2 and lines[0] == _CACHE_FORMAT and lines[1] == key:
        return lines[2:]
    modules = scan_imports(package_dir)
    try:
        from trainctl.fsutil import atomic_write_text

        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, "\n".join([_CACHE_FORMAT, key, *modules]) + "\n")
    except OSError:
        pass  # no cache: the scan runs again next time
    return modules


def missing_modules(src: PpdetSource) -> list[str]:
    """Third-party modules `import ppdet` needs that this Python cannot find (nothing is imported:
    sys.path is searched first, then the import hooks of e.g. editable installs)."""
    import importlib.machinery
    import importlib.util

    if not src.package_dir or not os.path.isdir(src.package_dir):
        return []

    def found(name: str) -> bool:
        return (importlib.machinery.PathFinder.find_spec(name) is not None
                or importlib.util.find_spec(name) is not None)

    return [m for m in third_party_imports(src.package_dir, _wheel_fingerprint(src)) if not found(m)]


# module -> the package that installs it, where the names differ (when requirements.txt does not say)
MODULE_PACKAGES = {"cv2": "opencv-python", "yaml": "pyyaml", "PIL": "Pillow", "sklearn": "scikit-learn",
                   "skimage": "scikit-image", "paddle": "paddlepaddle", "mpl_toolkits": "matplotlib", "lap": "lapx"}
# installed together with a missing module: imgaug 0.4.0 uses numpy aliases removed in numpy 1.24, and
# pip would otherwise upgrade numpy (paddledet and paddle's wheels here want numpy<1.24)
INSTALL_WITH = {"imgaug": "numpy<1.24"}
# requirement lines not to copy: the `sklearn` placeholder package (install scikit-learn instead)
_REQUIREMENT_SKIP = {"sklearn"}


def install_command(src: PpdetSource, missing: list[str]) -> str:
    """`pip install ...` for the missing modules, with the versions a checkout's requirements.txt gives."""
    wanted = {m: MODULE_PACKAGES.get(m, m) for m in missing}
    requirements = Path(src.dir or "", "requirements.txt")
    text = _read(requirements) if src.kind == "source" else ""
    for line in text.splitlines():
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*([^;#]*)", line.strip())
        if not m or m.group(1).lower() in _REQUIREMENT_SKIP:
            continue
        module = PACKAGE_MODULES.get(m.group(1).lower(), m.group(1).replace("-", "_"))
        if module in wanted:
            wanted[module] = m.group(1) + m.group(2).replace(" ", "")
    extra = [INSTALL_WITH[m] for m in missing if m in INSTALL_WITH]
    words = []
    for word in dict.fromkeys([*wanted.values(), *extra]):
        words.append(f"'{word}'" if any(c in word for c in "<>=!") else word)
    command = "pip install " + " ".join(words)
    if text:
        command += f" (all of the checkout's: pip install -r {requirements})"
    return command


def check_importable(src: PpdetSource) -> None:
    """The pre-launch check: a UserError naming the missing modules and how to install them."""
    ensure_available(src)
    missing = missing_modules(src)
    if missing:
        names = ", ".join(missing)
        raise UserError(f"{src.short()} (chosen by {src.rule}) cannot be imported: missing module"
                        f"{'s' if len(missing) > 1 else ''} {names}", hint=f"install with: {install_command(src, missing)}")


# config sections that are not classes a ppdet registers (readers, datasets, plain settings)
_NOT_CLASSES = ("Reader", "Dataset", "DataSet")


def config_classes(data: dict) -> list[str]:
    """The registered classes a resolved config asks ppdet to build: `architecture` and every
    top-level section named like a class (PPYOLOEHead, HybridEncoder, ...), readers and datasets aside."""
    names = []
    arch = data.get("architecture")
    if isinstance(arch, str):
        names.append(arch)
    for key, value in data.items():
        if (isinstance(key, str) and key[:1].isupper() and isinstance(value, dict)
                and not key.endswith(_NOT_CLASSES) and key.isidentifier()):
            names.append(key)
    return list(dict.fromkeys(names))


def missing_classes(src: PpdetSource, names: list[str]) -> list[str]:
    """Which of `names` no module of the chosen ppdet defines (`class NAME` in its sources; static, no import)."""
    import re

    if not src.package_dir or not os.path.isdir(src.package_dir):
        return []
    wanted = set(names)
    found: set[str] = set()
    pattern = re.compile(r"^class\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
    for root, _dirs, files in os.walk(src.package_dir):
        for name in files:
            if name.endswith(".py"):
                found.update(pattern.findall(_read(Path(root) / name)))
        if wanted <= found:
            return []
    return [n for n in names if n not in found]


def check_config_classes(src: PpdetSource, data: dict, config_name: str) -> None:
    """A config whose model the chosen ppdet does not have (RT-DETR on paddledet 2.6.0): one line
    before launch, naming what is missing and where to get it, instead of a KeyError in the worker."""
    missing = missing_classes(src, config_classes(data))
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise UserError(f"{config_name} needs {shown}, which {src.short()} does not have",
                        hint="use a PaddleDetection checkout that has it: --ppdet DIR (release-2.7.1 or develop; "
                             "docs/models.md)")
