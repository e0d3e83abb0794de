"""The pre-launch checks of the ppdet a run uses (pure; static, nothing is imported).

`missing_modules()`: a static scan of the modules `import ppdet` executes for their top-level
third-party imports, cached per tree, and the `pip install` line for what this Python lacks
(`check_importable`). `check_config_classes()`: the registered classes a config asks for that
the tree does not define (RT-DETR on paddledet 2.6.0). Which ppdet that is, is
`trainctl.core.ppdet_source`'s rule.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from trainctl.core.ppdet_source import PpdetSource, ensure_available, read_text
from trainctl.errors import UserError

# requirement name (lower case) -> module it provides, where they differ
PACKAGE_MODULES = {
    "opencv-python": "cv2", "opencv-python-headless": "cv2", "opencv-contrib-python": "cv2", "pyyaml": "yaml",
    "pillow": "PIL", "scikit-learn": "sklearn", "scikit-image": "skimage", "lapx": "lap", "shapely": "shapely",
    "paddlepaddle": "paddle", "paddlepaddle-gpu": "paddle", "pycocotools": "pycocotools",
}

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
        for m in _IMPORT.finditer(read_text(path)):
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
    lines = read_text(cache).splitlines()
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
    text = read_text(requirements) if src.kind == "source" else ""
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
                found.update(pattern.findall(read_text(Path(root) / name)))
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
