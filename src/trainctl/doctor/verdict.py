"""The judgement of `trainctl doctor`: the collected facts as status items (ok / warn / fail / info)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from trainctl.doctor.policy import INSTALL_HINT_CPU, INSTALL_HINT_GPU, TROUBLESHOOTING, VERDICT_STATUS, prefix_match, version_tuple


@dataclass
class Item:
    section: str
    name: str
    value: str
    status: str = "info"  # ok | warn | fail | info
    hint: str = ""


def fmt_list(values: list[str]) -> str:
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
        too_new = ppdet["version"] and prefix_match(ppdet["version"], "2.6") and version_tuple(np_["version"]) >= (1, 24)
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
        names = [gpu_text(g) for g in gpus]
        add(Item("gpus", "gpus", fmt_list(names) if names else "none (nvidia-smi absent or no GPU)", "info"))
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
        add(Item("network", "interfaces", fmt_list([iface_text(i) for i in ifaces]), "info"))
    if host.get("default_route_interface") is not None or "default_route_interface" not in host["errors"]:
        add(Item("network", "default route", str(host.get("default_route_interface") or "none"), "info"))
    ports = host.get("ib_ports")
    if ports is not None:
        add(Item("network", "rdma ports", fmt_list([port_text(p) for p in ports]), "info"))
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


def gpu_text(gpu: Any) -> str:
    if not isinstance(gpu, dict):
        return str(gpu)
    idx, name, mem = _get(gpu, "index"), _get(gpu, "name"), _get(gpu, "memory_mib", "memory_total_mib", "memory", "memory_total")
    text = f"{idx}: {name}" if idx is not None else str(name)
    return f"{text} ({mem} MiB)" if mem is not None and isinstance(mem, (int, float)) else (f"{text} ({mem})" if mem else text)


def iface_text(iface: Any) -> str:
    if not isinstance(iface, dict):
        return str(iface)
    name = _get(iface, "name", "ifname")
    state = _get(iface, "operstate", "state")
    return f"{name} ({state})" if state else str(name)


def port_text(port: Any) -> str:
    if not isinstance(port, dict):
        return str(port)
    layer = _get(port, "link_layer")
    kind = "RoCE" if layer == "Ethernet" else (layer or "?")
    return f"{_get(port, 'hca')}:{_get(port, 'port')} {_get(port, 'state')} {kind}"


def auto_text(auto: dict | None) -> str:
    if not auto:
        return "unknown"
    return (f"{auto['preset']} (multi-node {auto['device'].upper()} job); "
            f"GPU jobs: {auto['gpu_single_node']['preset']} on one node, {auto['gpu_multi_node']['preset']} on several")


def exit_code(report: dict[str, Any]) -> int:
    return 1 if report["status"] == "fail" else 0


def _onnx_item(add, paddle: dict, packages: dict) -> None:
    """`export --format onnx`: paddle2onnx and onnxruntime versions, and whether the pair with this paddle was measured."""
    from trainctl.core import onnx_policy

    p2o, ort = packages.get("paddle2onnx", {}).get("version"), packages.get("onnxruntime", {}).get("version")
    if not p2o and not ort:
        add(Item("paddle", "onnx", "paddle2onnx, onnxruntime not installed (export --format onnx)", "info", onnx_policy.INSTALL_HINT))
        return
    status = onnx_policy.pair_status(paddle.get("version"), p2o)
    value = f"paddle2onnx {p2o or 'missing'}, onnxruntime {ort or 'missing'}: {status}"
    add(Item("paddle", "onnx", value, "ok" if status.startswith("known to work") and ort else "warn",
             "" if p2o and ort else onnx_policy.INSTALL_HINT))
