"""Environment probe behind `trainctl doctor`.

Collects facts (Python, paddle and paddledet builds, their compatibility,
libraries, GPUs, NCCL, network interfaces, InfiniBand/RoCE ports, GPUDirect
RDMA, the `--net auto` choice), turns them into status items (ok / warn /
fail / info) and renders them as a table, JSON or a bug-report block.

Never imports paddle: versions come from package metadata and from the
generated `paddle/version/__init__.py`, read as text. The optional check
(`run_paddle_check`) imports paddle in a child process, so an import
segfault is reported instead of killing trainctl.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainctl import __version__
from trainctl.errors import TrainctlError

TROUBLESHOOTING = "docs/troubleshooting.md"

# -- compatibility table ----------------------------------------------------
# PaddleDetection's own requirements: minimum paddle per PaddleDetection release line.
PPDET_MIN_PADDLE: dict[str, str] = {
    "develop": "2.3.2",
    "2.6": "2.3.2",
    "2.5": "2.2.2",
    "2.4": "2.2.2",
    "2.3": "2.2.0rc0",
    "2.2": "2.1.2",
    "2.1": "2.1.0",
    "2.0": "2.0.1",
}


@dataclass(frozen=True)
class MeasuredPair:
    """A (paddle, paddledet) combination run on trainctl's machines; versions match by prefix."""

    paddle: str
    paddledet: str
    verdict: str  # ok | shims | broken
    note: str
    python: str | None = None  # "3.11": the measurement only applies to this Python


MEASURED_PAIRS: tuple[MeasuredPair, ...] = (
    MeasuredPair(
        paddle="2.6",
        paddledet="2.6",
        python="3.11",
        verdict="broken",
        note="`import paddle, ppdet` segfaults (SIGSEGV in inflateReset2) with paddle 2.6.2 + paddledet 2.6.0 "
        "on Python 3.11; use paddle 3.x",
    ),
    MeasuredPair(
        paddle="3",
        paddledet="2.6",
        verdict="shims",
        note="paddle 3.3.1 + paddledet 2.6.0 train, eval and infer; export needs trainctl's shim "
        "(to_static full_graph=True and FLAGS_enable_pir_api=0)",
    ),
)

VERDICT_STATUS = {"ok": "ok", "shims": "ok", "untested": "warn", "unknown": "warn", "broken": "fail", "unsupported": "fail"}

INSTALL_HINT_CPU = "pip install 'trainctl[cpu]'  (or: pip install paddlepaddle paddledet==2.6.0 'numpy<1.24' 'scikit-learn<1.6')"
INSTALL_HINT_GPU = (
    "pip install paddlepaddle-gpu from Paddle's index for your CUDA version, "
    "e.g. python -m pip install paddlepaddle-gpu -i https://www.paddlepaddle.org.cn/packages/stable/cu118/ (see docs/install.md)"
)


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.2.0rc0' -> (2, 2, 0); non-numeric tails are dropped."""
    parts = []
    for piece in text.split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() != len(piece):
            break
    return tuple(parts)


def _prefix_match(version: str, prefix: str) -> bool:
    v, p = version_tuple(version), version_tuple(prefix)
    return bool(v) and v[: len(p)] == p


def compatibility(paddle_version: str | None, ppdet_version: str | None, python_version: str | None = None) -> dict:
    """Verdict for a (paddle, paddledet) pair: ok, shims, broken, unsupported, untested or unknown."""
    result = {"paddle": paddle_version, "paddledet": ppdet_version, "verdict": "unknown", "reason": "", "required_paddle": None}
    if not paddle_version or not ppdet_version:
        missing = "paddle" if not paddle_version else "paddledet"
        result.update(verdict="unknown", reason=f"{missing} is not installed")
        return result
    python_version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    if version_tuple(paddle_version) == (0, 0, 0):
        result.update(verdict="untested", reason="paddle develop build (version 0.0.0): not in the compatibility table")
        return result
    for pair in MEASURED_PAIRS:
        if pair.python and not _prefix_match(python_version, pair.python):
            continue
        if _prefix_match(paddle_version, pair.paddle) and _prefix_match(ppdet_version, pair.paddledet):
            result.update(verdict=pair.verdict, reason=f"measured: {pair.note}")
            line = ".".join(str(x) for x in version_tuple(ppdet_version)[:2])
            result["required_paddle"] = PPDET_MIN_PADDLE.get(line)
            return result
    ppdet_t = version_tuple(ppdet_version)
    line = "develop" if ppdet_t == (0, 0, 0) else ".".join(str(x) for x in ppdet_t[:2])
    required = PPDET_MIN_PADDLE.get(line)
    result["required_paddle"] = required
    if required is None:
        result.update(verdict="untested", reason=f"paddledet {ppdet_version} is not in the compatibility table")
    elif version_tuple(paddle_version) < version_tuple(required):
        result.update(verdict="unsupported", reason=f"PaddleDetection {line} needs paddle >= {required}")
    elif version_tuple(paddle_version)[:1] >= (3,):
        result.update(
            verdict="untested",
            reason=f"PaddleDetection {line} predates paddle 3; only paddledet 2.6 with paddle 3 was measured",
        )
    else:
        result.update(verdict="ok", reason=f"PaddleDetection {line} needs paddle >= {required}")
    return result


# -- package facts (no imports of the packages themselves) ------------------


@functools.lru_cache(maxsize=1)
def _top_level_map() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _dists_for(top_level: str) -> list[importlib.metadata.Distribution]:
    names = _top_level_map().get(top_level, [])
    dists = []
    for name in dict.fromkeys(names):
        try:
            dists.append(importlib.metadata.distribution(name))
        except importlib.metadata.PackageNotFoundError:
            continue
    return dists


def _module_importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def read_paddle_version_file(path: str | os.PathLike) -> dict[str, Any]:
    """Constants of paddle's generated version module (full_version, commit, cuda_version, ...), read as text."""
    values: dict[str, Any] = {}
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return values
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def _build_value(value: Any) -> str | None:
    """paddle writes 'False'/'None'/'0' for a component it was not built with."""
    if value is None:
        return None
    text = str(value)
    return None if text in ("False", "None", "0", "") else text


def nccl_code_to_version(code: str | None) -> str | None:
    """NCCL_VERSION_CODE (e.g. '21805' or 2708) -> '2.18.5'; dotted input is returned as is."""
    if not code:
        return None
    if "." in code or not code.isdigit():
        return code
    n = int(code)
    if n >= 10000:
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def _nccl_code(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else None


def paddle_facts() -> dict[str, Any]:
    dists = _dists_for("paddle")
    if not dists:
        return {"installed": False, "distribution": None, "version": None, "commit": None, "cuda_build": False,
                "cuda": None, "cudnn": None, "nccl": None, "nccl_code": None, "location": None, "install_hint": INSTALL_HINT_CPU}
    dist = dists[0]
    # paddle >= 2.2 generates paddle/version/__init__.py; older releases paddle/version.py
    version_file = Path(str(dist.locate_file("paddle/version/__init__.py")))
    if not version_file.is_file():
        version_file = Path(str(dist.locate_file("paddle/version.py")))
    consts = read_paddle_version_file(version_file)
    cuda = _build_value(consts.get("cuda_version"))
    facts = {
        "installed": True,
        "distribution": dist.metadata["Name"],
        "version": consts.get("full_version") or dist.version,
        "commit": consts.get("commit"),
        "cuda_build": cuda is not None,
        "cuda": cuda,
        "cudnn": _build_value(consts.get("cudnn_version")),
        "nccl": nccl_code_to_version(_build_value(consts.get("nccl_version"))),
        "nccl_code": _nccl_code(_build_value(consts.get("nccl_version"))),
        "with_mkl": consts.get("with_mkl"),
        "location": str(Path(str(dist.locate_file("paddle")))),
        "all_distributions": [d.metadata["Name"] for d in dists],
    }
    if len(dists) > 1:
        facts["conflict"] = "several paddle distributions installed: " + ", ".join(facts["all_distributions"])
    return facts


# distributions that own a module name without providing the module (paddledet depends on "sklearn")
_PLACEHOLDER_DISTS = {"sklearn"}


def _dist_version(top_level: str) -> tuple[str | None, str | None]:
    dists = [d for d in _dists_for(top_level) if (d.metadata["Name"] or "").lower() not in _PLACEHOLDER_DISTS]
    if not dists:
        return None, None
    return dists[0].metadata["Name"], dists[0].version


def package_facts() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, top in (("paddledet", "ppdet"), ("numpy", "numpy"), ("opencv", "cv2"), ("scikit_learn", "sklearn"),
                     ("pycocotools", "pycocotools"), ("visualdl", "visualdl"),
                     ("paddle2onnx", "paddle2onnx"), ("onnxruntime", "onnxruntime")):  # the onnx extra
        dist, version = _dist_version(top)
        out[key] = {"distribution": dist, "version": version, "importable": _module_importable(top)}
    nccl_dists = [(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()
                  if (d.metadata["Name"] or "").lower().startswith("nvidia-nccl")]
    out["nvidia_nccl_wheel"] = {"distribution": nccl_dists[0][0], "version": nccl_dists[0][1]} if nccl_dists else None
    return out


# -- libstdc++ (GLIBCXX) ---------------------------------------------------

_LIBSTDCXX_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu")


def libstdcxx_facts(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Which libstdc++.so.6 a child process would likely load first, and the newest GLIBCXX it provides."""
    env = os.environ if env is None else env
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    if env.get("CONDA_PREFIX"):
        dirs.append(os.path.join(env["CONDA_PREFIX"], "lib"))
    dirs += list(_LIBSTDCXX_DIRS)
    for d in dirs:
        path = os.path.join(d, "libstdc++.so.6")
        if os.path.exists(path):
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue
            versions = {version_tuple(m.decode()) for m in re.findall(rb"GLIBCXX_(\d+\.\d+(?:\.\d+)?)", data)}
            newest = max(versions) if versions else None
            return {"path": os.path.realpath(path), "newest_glibcxx": ".".join(map(str, newest)) if newest else None,
                    "has_3_4_30": bool(newest and newest >= (3, 4, 30))}
    return {"path": None, "newest_glibcxx": None, "has_3_4_30": None}


# -- host facts (trainctl.launch.hostinfo / netpresets) ---------------------


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "_asdict"):
        return _plain(obj._asdict())
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def host_facts(sys_root: str = "/sys", proc_root: str = "/proc", nccl_code: int | None = None) -> dict[str, Any]:
    """GPUs, interfaces, HCAs, GPUDirect and the `--net auto` choice, from the launch layer's probes.

    `--net auto` depends on the job: doctor reports the choice for a multi-node
    job on this host's device (GPU if nvidia-smi lists one, else CPU), and what a
    GPU job would get on one node and on several.
    """
    out: dict[str, Any] = {"errors": {}}
    try:
        from trainctl.launch import hostinfo
    except ImportError as exc:
        out["errors"]["hostinfo"] = f"trainctl.launch.hostinfo unavailable: {exc}"
        hostinfo = None
    probes = {
        "gpus": lambda: hostinfo.gpus(),
        "interfaces": lambda: hostinfo.interfaces(sys_root=sys_root),
        "default_route_interface": lambda: hostinfo.default_route_interface(proc_root=proc_root),
        "ib_ports": lambda: hostinfo.ib_ports(sys_root=sys_root),
        "gpudirect_module": lambda: hostinfo.gpudirect_module(sys_root=sys_root),
    }
    for key, probe in probes.items():
        out[key] = None
        if hostinfo is None:
            continue
        try:
            out[key] = _plain(probe())
        except Exception as exc:  # a probe failing is a fact to report, not a crash
            out["errors"][key] = f"{type(exc).__name__}: {exc}"
    out["net_auto"] = None
    try:
        from trainctl.launch import netpresets
    except ImportError as exc:
        out["errors"]["net_auto"] = f"trainctl.launch.netpresets unavailable: {exc}"
    else:
        try:
            facts = netpresets.HostFacts.probe(sys_root=sys_root, proc_root=proc_root, nccl_code=nccl_code)
            device = "gpu" if out.get("gpus") else "cpu"
            choice = {}
            for label, dev, nnodes in (("this_host", device, 2), ("gpu_single_node", "gpu", 1),
                                       ("gpu_multi_node", "gpu", 2)):
                name, reason = netpresets.choose_auto(facts, device=dev, nnodes=nnodes)
                choice[label] = {"preset": name, "reason": reason}
            out["net_auto"] = {"device": device, "preset": choice["this_host"]["preset"],
                               "reason": choice["this_host"]["reason"],
                               "gpu_single_node": choice["gpu_single_node"], "gpu_multi_node": choice["gpu_multi_node"]}
        except Exception as exc:
            out["errors"]["net_auto"] = f"{type(exc).__name__}: {exc}"
    return out


# -- the real paddle check (child process) ----------------------------------

_CHECK_SCRIPT = r"""
import json, sys
def stage(name):
    print("TRAINCTL_STAGE " + name, flush=True)
stage("import paddle")
import paddle
out = {"paddle": paddle.__version__, "compiled_with_cuda": bool(paddle.device.is_compiled_with_cuda()),
       "cuda": str(paddle.version.cuda()), "cudnn": str(paddle.version.cudnn())}
if WITH_PPDET:
    stage("import ppdet")
    import ppdet
    out["ppdet_imported"] = True
    out["ppdet_file"] = ppdet.__file__
gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
stage("compute on " + ("gpu" if gpu else "cpu"))
paddle.set_device("gpu:0" if gpu else "cpu")
x = paddle.to_tensor([[1.0, 2.0], [3.0, 4.0]])
y = paddle.matmul(x, x).sum()
paddle.device.synchronize() if gpu else None
out["device"] = paddle.device.get_device()
out["result"] = float(y.numpy())
print("TRAINCTL_RESULT " + json.dumps(out), flush=True)
"""

CHECK_EXPECTED = 54.0  # sum of [[1,2],[3,4]] @ [[1,2],[3,4]] = 7+10+15+22


def run_paddle_check(python: str | None = None, with_ppdet: bool = True, timeout: float = 300.0,
                     env: dict[str, str] | None = None) -> dict[str, Any]:
    """Import paddle (and ppdet) and multiply two matrices in a child process; never raises."""
    python = python or sys.executable
    script = _CHECK_SCRIPT.replace("WITH_PPDET", "True" if with_ppdet else "False")
    result: dict[str, Any] = {"ran": True, "ok": False, "returncode": None, "stage": None, "device": None,
                              "result": None, "error": None, "compiled_with_cuda": None, "cuda": None, "cudnn": None}
    try:
        proc = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else None)
    except subprocess.TimeoutExpired:
        result["error"] = f"timed out after {timeout:.0f} s"
        return result
    except OSError as exc:
        result["error"] = f"could not start {python}: {exc}"
        return result
    result["returncode"] = proc.returncode
    for line in proc.stdout.splitlines():
        if line.startswith("TRAINCTL_STAGE "):
            result["stage"] = line.split(" ", 1)[1]
        elif line.startswith("TRAINCTL_RESULT "):
            data = json.loads(line.split(" ", 1)[1])
            for key in ("device", "result", "compiled_with_cuda", "cuda", "cudnn", "ppdet_file"):
                result[key] = data.get(key)
    if proc.returncode < 0:
        try:
            signame = signal.Signals(-proc.returncode).name
        except ValueError:
            signame = f"signal {-proc.returncode}"
        result["error"] = f"{result['stage'] or 'import'} crashed ({signame})"
        result["crashed"] = True
        return result
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        result["error"] = f"{result['stage'] or 'check'} failed: {tail[-1] if tail else 'exit code ' + str(proc.returncode)}"
        if "GLIBCXX" in proc.stderr:
            result["glibcxx"] = True
        return result
    if result["result"] is None or abs(result["result"] - CHECK_EXPECTED) > 1e-4:
        result["error"] = f"wrong result {result['result']!r} (expected {CHECK_EXPECTED})"
        return result
    result["ok"] = True
    return result


# -- collect, judge, render -------------------------------------------------


def ppdet_choice(flag: str | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Which ppdet a run started here would use (launch/ppdet_source.py's rule), and what it lacks."""
    from trainctl.launch import ppdet_source

    try:
        src = ppdet_source.choose(flag, cwd=cwd)
    except TrainctlError as exc:
        return {"kind": "error", "description": exc.one_line(), "missing": [], "env": {}}
    out = src.to_dict()
    out["missing"] = ppdet_source.missing_modules(src)
    out["install"] = ppdet_source.install_command(src, out["missing"]) if out["missing"] else None
    out["env"] = ppdet_source.worker_env(src, os.environ)
    return out


def collect(sys_root: str = "/sys", proc_root: str = "/proc", check: bool = False,
            check_timeout: float = 300.0, ppdet: str | None = None) -> dict[str, Any]:
    """Every fact doctor knows, as a JSON-ready dict (the `--json` output), plus the judged items."""
    _top_level_map.cache_clear()
    paddle = paddle_facts()
    packages = package_facts()
    py = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    report: dict[str, Any] = {
        "trainctl": __version__,
        "platform": platform.platform(),
        "python": {"version": py, "executable": sys.executable, "implementation": platform.python_implementation()},
        "paddle": paddle,
        "packages": packages,
        "compatibility": compatibility(paddle["version"], packages["paddledet"]["version"],
                                       f"{sys.version_info.major}.{sys.version_info.minor}"),
        "libstdcxx": libstdcxx_facts(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "host": host_facts(sys_root=sys_root, proc_root=proc_root, nccl_code=paddle.get("nccl_code")),
        "check": None,
    }
    report["ppdet"] = ppdet_choice(ppdet)
    if check:
        if paddle["installed"]:
            with_ppdet = report["ppdet"]["kind"] in ("source", "installed") and not report["ppdet"]["missing"]
            report["check"] = run_paddle_check(with_ppdet=with_ppdet, timeout=check_timeout,
                                               env=dict(os.environ, **report["ppdet"]["env"]))
        else:
            report["check"] = {"ran": False, "ok": False, "error": "paddle is not installed"}
    items = judge(report)
    report["items"] = [dataclasses.asdict(i) for i in items]
    report["status"] = "fail" if any(i.status == "fail" for i in items) else (
        "warn" if any(i.status == "warn" for i in items) else "ok")
    return report


@dataclass
class Item:
    section: str
    name: str
    value: str
    status: str = "info"  # ok | warn | fail | info
    hint: str = ""


def _fmt_list(values: list[str]) -> str:
    return ", ".join(values) if values else "none"


def judge(report: dict[str, Any]) -> list[Item]:
    """Turn facts into status items; a `fail` item makes doctor exit 1."""
    items: list[Item] = []
    add = items.append
    py = report["python"]
    add(Item("python", "python", f"{py['version']} ({py['executable']})",
             "ok" if tuple(sys.version_info[:2]) >= (3, 10) else "fail", ""))
    add(Item("python", "trainctl", report["trainctl"], "info"))

    paddle = report["paddle"]
    packages = report["packages"]
    if not paddle["installed"]:
        add(Item("paddle", "paddle", "not installed", "fail",
                 f"CPU: {INSTALL_HINT_CPU}; GPU: {INSTALL_HINT_GPU}"))
    else:
        add(Item("paddle", "paddle", f"{paddle['version']} ({paddle['distribution']})", "ok"))
        if paddle.get("conflict"):
            add(Item("paddle", "paddle packages", paddle["conflict"], "fail",
                     "uninstall all but one (pip uninstall paddlepaddle paddlepaddle-gpu, then reinstall one)"))
        add(Item("paddle", "commit", str(paddle.get("commit") or "unknown"), "info"))
        if paddle["cuda_build"]:
            add(Item("paddle", "build", f"CUDA {paddle['cuda']}, cuDNN {paddle['cudnn'] or '?'}", "info"))
        else:
            add(Item("paddle", "build", "CPU only", "info"))
    ppdet = packages["paddledet"]
    if ppdet["version"] is None:
        add(Item("paddle", "paddledet", "not installed", "fail", "pip install paddledet==2.6.0"))
    else:
        add(Item("paddle", "paddledet", ppdet["version"], "ok"))
    used = report.get("ppdet")
    if used:
        if used["kind"] in ("source", "installed"):
            add(Item("paddle", "ppdet used", used["description"], "fail" if used["missing"] else "ok",
                     f"missing {', '.join(used['missing'])}: {used['install']}" if used["missing"] else ""))
        else:
            add(Item("paddle", "ppdet used", used["description"], "fail",
                     "pip install paddledet==2.6.0, or pass --ppdet DIR (a PaddleDetection checkout)"))
    compat = report["compatibility"]
    if paddle["installed"] and ppdet["version"]:
        status = VERDICT_STATUS.get(compat["verdict"], "warn")
        hint = ""
        if status == "fail":
            hint = f"install paddle 3.x with paddledet 2.6.0 (see {TROUBLESHOOTING})"
        elif compat["verdict"] == "untested":
            hint = "known-good pair: paddle 3.x + paddledet 2.6.0"
        add(Item("paddle", "compatibility", f"{compat['verdict']}: {compat['reason']}", status, hint))
    _onnx_item(add, paddle, packages)

    np_ = packages["numpy"]
    if np_["version"] is None:
        add(Item("libraries", "numpy", "not installed", "fail" if ppdet["version"] else "warn", "pip install 'numpy<1.24'"))
    else:
        too_new = ppdet["version"] and _prefix_match(ppdet["version"], "2.6") and version_tuple(np_["version"]) >= (1, 24)
        add(Item("libraries", "numpy", np_["version"], "warn" if too_new else "ok",
                 "paddledet 2.6.0 requires numpy<1.24: pip install 'numpy<1.24'" if too_new else ""))
    cv = packages["opencv"]
    add(Item("libraries", "opencv", cv["version"] or ("importable" if cv["importable"] else "not installed"),
             "ok" if (cv["version"] or cv["importable"]) else ("fail" if ppdet["version"] else "warn"),
             "" if (cv["version"] or cv["importable"]) else "pip install opencv-python"))
    if ppdet["version"]:
        sk = packages["scikit_learn"]
        real_sklearn = sk["distribution"] and sk["distribution"].lower() != "sklearn"
        add(Item("libraries", "scikit-learn", sk["version"] if real_sklearn else "not installed",
                 "ok" if real_sklearn else "fail",
                 "" if real_sklearn else "`import ppdet` needs it: pip install 'scikit-learn<1.6'"))
        coco = packages["pycocotools"]
        add(Item("libraries", "pycocotools", coco["version"] or "not installed", "ok" if coco["version"] else "warn",
                 "" if coco["version"] else "COCO datasets and metrics need it: pip install pycocotools"))
    lib = report["libstdcxx"]
    if lib["path"]:
        add(Item("libraries", "libstdc++", f"{lib['path']} (GLIBCXX up to {lib['newest_glibcxx']})",
                 "ok" if lib["has_3_4_30"] else "warn",
                 "" if lib["has_3_4_30"] else f"older than GLIBCXX_3.4.30; see {TROUBLESHOOTING}"))

    host = report["host"]
    gpus = host.get("gpus")
    if gpus is None:
        add(Item("gpus", "gpus", "unknown: " + host["errors"].get("gpus", host["errors"].get("hostinfo", "")), "warn"))
    else:
        names = [_gpu_text(g) for g in gpus]
        add(Item("gpus", "gpus", _fmt_list(names) if names else "none (nvidia-smi absent or no GPU)", "info"))
        if names and paddle["installed"] and not paddle["cuda_build"]:
            add(Item("gpus", "paddle on GPU", "GPUs present but paddle is a CPU build", "warn", INSTALL_HINT_GPU))
        if not names and paddle["cuda_build"]:
            add(Item("gpus", "paddle on GPU", "CUDA build of paddle but no GPU visible", "warn",
                     "check nvidia-smi and CUDA_VISIBLE_DEVICES"))
    nccl_parts = []
    if paddle.get("nccl"):
        nccl_parts.append(f"paddle built with {paddle['nccl']}")
    if packages.get("nvidia_nccl_wheel"):
        w = packages["nvidia_nccl_wheel"]
        nccl_parts.append(f"{w['distribution']} {w['version']}")
    add(Item("gpus", "nccl", "; ".join(nccl_parts) or "none (CPU build: gloo is used)", "info"))

    ifaces = host.get("interfaces")
    if ifaces is None:
        add(Item("network", "interfaces", "unknown: " + host["errors"].get("interfaces", host["errors"].get("hostinfo", "")), "warn"))
    else:
        add(Item("network", "interfaces", _fmt_list([_iface_text(i) for i in ifaces]), "info"))
    if host.get("default_route_interface") is not None or "default_route_interface" not in host["errors"]:
        add(Item("network", "default route", str(host.get("default_route_interface") or "none"), "info"))
    ports = host.get("ib_ports")
    if ports is not None:
        add(Item("network", "rdma ports", _fmt_list([_port_text(p) for p in ports]), "info"))
    gd = host.get("gpudirect_module")
    if "gpudirect_module" in host and "gpudirect_module" not in host["errors"] and host.get("ib_ports") is not None:
        add(Item("network", "gpudirect rdma", str(gd) if gd else "no module (nvidia_peermem / nv_peer_mem not loaded)", "info"))
    auto = host.get("net_auto")
    if auto:
        add(Item("network", "--net auto", f"{auto['preset']} for a multi-node {auto['device'].upper()} job: {auto['reason']}", "info"))
        if auto["device"] != "gpu":
            multi = auto["gpu_multi_node"]
            add(Item("network", "--net auto (GPU)", f"{multi['preset']} for a multi-node GPU job: {multi['reason']}", "info"))
    else:
        add(Item("network", "--net auto", "unknown: " + host["errors"].get("net_auto", ""), "warn"))

    check = report.get("check")
    if check is not None:
        if check.get("ok"):
            add(Item("check", "paddle check", f"ok on {check['device']} (matmul = {check['result']:g})", "ok"))
        else:
            err = check.get("error") or "failed"
            if check.get("crashed"):
                hint = f"import crashed: see {TROUBLESHOOTING} (paddle/ppdet import segfault)"
            elif check.get("glibcxx"):
                hint = f"GLIBCXX_3.4.30 not found: see {TROUBLESHOOTING}"
            elif not paddle["installed"]:
                hint = INSTALL_HINT_CPU
            else:
                hint = f"see {TROUBLESHOOTING}"
            add(Item("check", "paddle check", err, "fail", hint))
    return items


def _get(obj: Any, *keys: str) -> Any:
    if isinstance(obj, dict):
        for k in keys:
            if obj.get(k) not in (None, ""):
                return obj[k]
    return None


def _gpu_text(gpu: Any) -> str:
    if not isinstance(gpu, dict):
        return str(gpu)
    idx, name, mem = _get(gpu, "index"), _get(gpu, "name"), _get(gpu, "memory_mib", "memory_total_mib", "memory", "memory_total")
    text = f"{idx}: {name}" if idx is not None else str(name)
    return f"{text} ({mem} MiB)" if mem is not None and isinstance(mem, (int, float)) else (f"{text} ({mem})" if mem else text)


def _iface_text(iface: Any) -> str:
    if not isinstance(iface, dict):
        return str(iface)
    name = _get(iface, "name", "ifname")
    state = _get(iface, "operstate", "state")
    return f"{name} ({state})" if state else str(name)


def _port_text(port: Any) -> str:
    if not isinstance(port, dict):
        return str(port)
    layer = _get(port, "link_layer")
    kind = "RoCE" if layer == "Ethernet" else (layer or "?")
    return f"{_get(port, 'hca')}:{_get(port, 'port')} {_get(port, 'state')} {kind}"


def _auto_text(auto: dict | None) -> str:
    if not auto:
        return "unknown"
    return (f"{auto['preset']} (multi-node {auto['device'].upper()} job); "
            f"GPU jobs: {auto['gpu_single_node']['preset']} on one node, {auto['gpu_multi_node']['preset']} on several")


def exit_code(report: dict[str, Any]) -> int:
    return 1 if report["status"] == "fail" else 0


_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": ""}


def _onnx_item(add, paddle: dict, packages: dict) -> None:
    """`export --format onnx`: paddle2onnx and onnxruntime versions, and whether the pair with this paddle was measured."""
    from trainctl import onnx_policy

    p2o, ort = packages.get("paddle2onnx", {}).get("version"), packages.get("onnxruntime", {}).get("version")
    if not p2o and not ort:
        add(Item("paddle", "onnx", "paddle2onnx, onnxruntime not installed (export --format onnx)", "info", onnx_policy.INSTALL_HINT))
        return
    status = onnx_policy.pair_status(paddle.get("version"), p2o)
    value = f"paddle2onnx {p2o or 'missing'}, onnxruntime {ort or 'missing'}: {status}"
    add(Item("paddle", "onnx", value, "ok" if status.startswith("known to work") and ort else "warn",
             "" if p2o and ort else onnx_policy.INSTALL_HINT))


def render_table(report: dict[str, Any]) -> list[list[str]]:
    """Rows [section, item, value, status] for output.table."""
    rows = []
    last = None
    for item in report["items"]:
        section = item["section"] if item["section"] != last else ""
        last = item["section"]
        rows.append([section, item["name"], item["value"], _MARK[item["status"]]])
    return rows


def hints(report: dict[str, Any]) -> list[str]:
    return [f"{i['name']}: {i['hint']}" for i in report["items"] if i["status"] in ("warn", "fail") and i["hint"]]


def render_bug_report(report: dict[str, Any]) -> str:
    """A block to paste into a bug report (like `accelerate env`)."""
    paddle = report["paddle"]
    pk = report["packages"]
    host = report["host"]
    if paddle["installed"]:
        build = f"CUDA {paddle['cuda']} / cuDNN {paddle['cudnn']}" if paddle["cuda_build"] else "CPU"
        paddle_line = f"{paddle['version']} ({paddle['distribution']}, {build}, commit {paddle.get('commit') or '?'})"
    else:
        paddle_line = "not installed"
    lines = [
        "Copy and paste the text below into your bug report.",
        "",
        f"- trainctl version: {report['trainctl']}",
        f"- Platform: {report['platform']}",
        f"- Python version: {report['python']['version']} ({report['python']['executable']})",
        f"- paddle version: {paddle_line}",
        f"- paddledet version: {pk['paddledet']['version'] or 'not installed'}",
        f"- ppdet used: {(report.get('ppdet') or {}).get('description', '?')}",
        f"- compatibility: {report['compatibility']['verdict']} ({report['compatibility']['reason']})",
        f"- numpy version: {pk['numpy']['version'] or 'not installed'}",
        f"- opencv version: {pk['opencv']['version'] or 'not installed'}",
        f"- libstdc++: {report['libstdcxx']['path'] or '?'} (GLIBCXX up to {report['libstdcxx']['newest_glibcxx'] or '?'})",
        f"- GPUs: {_fmt_list([_gpu_text(g) for g in host.get('gpus') or []])}",
        f"- CUDA_VISIBLE_DEVICES: {report['cuda_visible_devices'] if report['cuda_visible_devices'] is not None else 'not set'}",
        f"- NCCL: {paddle.get('nccl') or 'none'}",
        f"- network interfaces: {_fmt_list([_iface_text(i) for i in host.get('interfaces') or []])}",
        f"- RDMA ports: {_fmt_list([_port_text(p) for p in host.get('ib_ports') or []])}",
        f"- GPUDirect RDMA module: {host.get('gpudirect_module') or 'none'}",
        f"- --net auto: {_auto_text(host.get('net_auto'))}",
    ]
    if report.get("check") is not None:
        c = report["check"]
        lines.append(f"- paddle check: {'ok on ' + str(c.get('device')) if c.get('ok') else c.get('error')}")
    problems = [f"{i['name']}: {i['value']}" for i in report["items"] if i["status"] == "fail"]
    lines.append(f"- doctor problems: {'; '.join(problems) if problems else 'none'}")
    return "\n".join(lines)
