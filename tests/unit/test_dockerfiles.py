"""docker/Dockerfile and docker/Dockerfile.gpu build what `k8s-manifest` runs (read, not built: no daemon here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from trainctl.cluster.k8s_manifest import DEFAULT_WORKDIR

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.gpu"]
EXTRAS = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_matches_the_project_and_the_manifest(path):
    steps = _instructions(path)
    args = {}
    for word, rest in steps:
        if word == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    for word, rest in steps:
        if word == "COPY":
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), f"{path.name}: COPY {src}: no such file in the repository"
    installs = [rest for word, rest in steps if word == "RUN" and "pip install" in rest and '".[' in rest]
    assert installs, f"{path.name}: no pip install of trainctl"
    for extra_spec in re.findall(r'"\.\[([^\]]+)\]"', " ".join(installs)):
        extras = extra_spec.replace("${EXTRAS}", args.get("EXTRAS", "")).split(",")
        assert set(extras) <= EXTRAS, f"{path.name}: extras {extras} not all in pyproject's {sorted(EXTRAS)}"
    assert "pip check" in " ".join(installs), f"{path.name}: pip check keeps numpy<1.24 honest"
    workdirs = [rest for word, rest in steps if word == "WORKDIR"]
    assert workdirs[-1] == DEFAULT_WORKDIR, f"{path.name}: the pods run in {DEFAULT_WORKDIR} (k8s-manifest --workdir)"
    if path.name.endswith(".gpu"):
        run = " ".join(installs)
        assert run.index("paddlepaddle-gpu") < run.index('".[gpu]"'), "paddle-gpu from the CUDA index first"
        assert "paddlepaddle.org.cn/packages/stable/${CUDA}/" in run
