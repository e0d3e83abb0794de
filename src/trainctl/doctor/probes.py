"""The facts `trainctl doctor` collects: Python, paddle and paddledet builds (from package metadata
and paddle's generated version file, read as text), libraries, GPUs, NCCL, network interfaces,
InfiniBand/RoCE ports, GPUDirect RDMA, the `--net auto` choice, the chosen ppdet.

Never imports paddle: the optional check (`run_paddle_check`) imports it in a child process,
so an import segfault is reported instead of killing trainctl.
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
from pathlib import Path
from typing import Any

from trainctl import __version__
from trainctl.doctor.policy import INSTALL_HINT_CPU, compatibility, version_tuple
from trainctl.doctor.verdict import judge
from trainctl.errors import TrainctlError


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


# -- host facts (trainctl.core.hostinfo / netpresets) ---------------------


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
        from trainctl.core import hostinfo
    except ImportError as exc:
        out["errors"]["hostinfo"] = f"trainctl.core.hostinfo unavailable: {exc}"
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
    """Which ppdet a run started here would use (core/ppdet_source.py's rule), and what it lacks."""
    from trainctl.core import ppdet_checks, ppdet_source

    try:
        src = ppdet_source.choose(flag, cwd=cwd)
    except TrainctlError as exc:
        return {"kind": "error", "description": exc.one_line(), "missing": [], "env": {}}
    out = src.to_dict()
    out["missing"] = ppdet_checks.missing_modules(src)
    out["install"] = ppdet_checks.install_command(src, out["missing"]) if out["missing"] else None
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
