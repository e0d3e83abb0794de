"""Which devices a run uses, decided without importing paddle.

A `DeviceEnv` describes the host: is the installed paddle a CUDA build, which
GPUs are visible, how many CPUs. `detect_device_env()` fills it from this
machine; tests build one by hand to plan for 8 GPUs on a laptop.

How the CUDA build is detected without `import paddle` (which costs seconds
and hundreds of MB): paddle's wheel ships `paddle/version/__init__.py`, a
generated file with lines such as `cuda_version = '12.6'` (or `'False'` in a
CPU build) and `nccl_version = '22103'`. We locate the package with
`importlib.util.find_spec("paddle")` (which does not execute it) and read that
file as text. The distribution name (`paddlepaddle-gpu` via importlib.metadata)
is the fallback when the file cannot be read.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trainctl.errors import UserError
from trainctl.core import hostinfo


@dataclass
class PaddleBuild:
    installed: bool
    version: str | None = None
    cuda: str | None = None  # CUDA version the wheel was built with, None for CPU builds
    nccl_code: int | None = None  # NCCL_VERSION_CODE, e.g. 22103 for 2.21.3; None when unknown

    @property
    def nccl_version(self) -> str | None:
        if not self.nccl_code:
            return None
        code = self.nccl_code
        if code >= 10000:  # 2.9 and later: major*10000 + minor*100 + patch
            return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
        return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def _version_file_fields(text: str) -> dict[str, str]:
    fields = {}
    for match in re.finditer(r"^(\w+)\s*=\s*'([^']*)'", text, re.MULTILINE):
        fields[match.group(1)] = match.group(2)
    return fields


def detect_paddle_build() -> PaddleBuild:
    """Read the installed paddle's build facts without importing it."""
    fields: dict[str, str] = {}
    found = False
    for entry in sys.path:
        package = Path(entry or ".") / "paddle"
        if not (package / "__init__.py").is_file():
            continue
        found = True
        try:
            fields = _version_file_fields((package / "version" / "__init__.py").read_text())
        except OSError:
            pass
        break
    if not found:
        return PaddleBuild(installed=False)
    cuda = fields.get("cuda_version")
    if cuda in (None, "", "False", "None"):
        cuda = None
    if not fields:  # unreadable: fall back to the distribution name
        import importlib.metadata  # only on this fallback path: it costs ~25 ms at start-up

        for dist in ("paddlepaddle-gpu", "paddlepaddle"):
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            return PaddleBuild(True, version, "unknown" if dist.endswith("-gpu") else None)
        return PaddleBuild(installed=True)
    nccl = fields.get("nccl_version", "0")
    return PaddleBuild(
        installed=True,
        version=fields.get("full_version"),
        cuda=cuda,
        nccl_code=int(nccl) if nccl.isdigit() and int(nccl) > 0 else None,
    )


@dataclass
class DeviceEnv:
    """What this host offers. Injectable so plans can be made for other hosts."""

    paddle: PaddleBuild
    gpus: list[hostinfo.GPU] = field(default_factory=list)  # what nvidia-smi lists (physical)
    cuda_visible_devices: str | None = None  # the CUDA_VISIBLE_DEVICES of the environment
    cpus: int = 1

    @property
    def cuda_build(self) -> bool:
        return self.paddle.cuda is not None

    def visible_gpus(self) -> list[str]:
        """The devices paddle sees, in order; `--gpus` ids index into this list."""
        if self.cuda_visible_devices is not None:
            return [d.strip() for d in self.cuda_visible_devices.split(",") if d.strip()]
        return [str(g.index) for g in self.gpus]


def detect_device_env(environ: dict[str, str] | None = None) -> DeviceEnv:
    environ = os.environ if environ is None else environ
    return DeviceEnv(
        paddle=detect_paddle_build(),
        gpus=hostinfo.gpus(),
        cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
        cpus=hostinfo.cpu_count(),
    )


@dataclass
class DeviceChoice:
    kind: str  # "cpu" or "gpu"
    ids: list[int] | None  # GPU ids (indices into CUDA_VISIBLE_DEVICES) or None for CPU
    nproc_per_node: int
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "gpu":
            ids = ",".join(str(i) for i in self.ids or [])
            return f"gpu {ids} ({self.nproc_per_node} per node)"
        return f"cpu ({self.nproc_per_node} process{'es' if self.nproc_per_node > 1 else ''} per node)"


def parse_gpu_ids(text: str) -> list[int]:
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise UserError(f"--gpus {text!r}: {part!r} is not a GPU index",
                            hint="give indices such as --gpus 0,1,2,3")
        ids.append(int(part))
    if not ids:
        raise UserError(f"--gpus {text!r} names no GPU", hint="give indices such as --gpus 0,1")
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UserError(f"--gpus {text!r} lists GPU {','.join(map(str, duplicates))} more than once",
                        hint="name each GPU once")
    return ids


def choose_devices(
    env: DeviceEnv,
    device: str = "auto",
    gpus: str | None = None,
    nproc: int | None = None,
    strict: bool = True,
) -> DeviceChoice:
    """Turn --device/--gpus/--nproc into a DeviceChoice.

    strict=False (dry runs): problems with this host (no CUDA build, unknown
    ids) become warnings so a plan can be made for another machine. Mistakes
    in the flags themselves (duplicates, conflicts) are errors either way.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"--device {device!r} is not one of cpu, gpu, auto")
    if nproc is not None and nproc < 1:
        raise UserError(f"--nproc {nproc} must be at least 1", hint="e.g. --nproc 2 for two CPU workers")
    ids = parse_gpu_ids(gpus) if gpus is not None else None
    warnings: list[str] = []

    if device == "cpu" and ids is not None:
        raise UserError("--device cpu and --gpus contradict each other",
                        hint="drop --gpus to train on CPU, or drop --device cpu")
    kind = device
    if device == "auto":
        if ids is not None:
            kind = "gpu"
        elif nproc is not None:
            kind = "cpu"
        else:
            kind = "gpu" if env.cuda_build and env.visible_gpus() else "cpu"

    if kind == "cpu":
        return DeviceChoice("cpu", None, nproc or 1, warnings)

    if nproc is not None and ids is not None and nproc != len(ids):
        raise UserError(f"--nproc {nproc} does not match the {len(ids)} GPUs of --gpus",
                        hint="on GPUs one process runs per device; drop --nproc")
    if ids is None:
        ids = list(range(nproc or 1))

    problems = []
    if not env.paddle.installed:
        problems.append(UserError("paddle is not installed, so GPUs cannot be used",
                                  hint="pip install 'trainctl[gpu]' (see README) or use --device cpu"))
    elif not env.cuda_build:
        problems.append(UserError(
            f"GPUs asked for (--gpus {','.join(map(str, ids))}) but the installed paddle "
            f"{env.paddle.version or ''} is a CPU-only build".replace("  ", " "),
            hint="install paddlepaddle-gpu from Paddle's package index (see README), or use --device cpu"))
    else:
        visible = env.visible_gpus()
        missing = [i for i in ids if i >= len(visible)]
        if missing:
            where = (f"CUDA_VISIBLE_DEVICES={env.cuda_visible_devices} makes {len(visible)} visible"
                     if env.cuda_visible_devices is not None else f"nvidia-smi lists {len(visible)}")
            problems.append(UserError(
                f"GPU {','.join(map(str, missing))} does not exist: {where}",
                hint=f"use ids 0..{len(visible) - 1}" if visible else "check the driver with nvidia-smi"))
    if problems:
        if strict:
            raise problems[0]
        warnings.extend(p.one_line() for p in problems)
    return DeviceChoice("gpu", ids, len(ids), warnings)
