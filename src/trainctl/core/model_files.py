"""Which files make an exported model directory (pure: no paddle).

paddle 3 with its new IR (PIR) writes the graph as model.json, the old IR as model.pdmodel; both
sit beside model.pdiparams and ppdet's infer_cfg.yml. PaddleDetection's tools/export_model.py and
`trainctl export` write the same names. Paddle Inference's Config(graph, params) reads either.
"""

from __future__ import annotations

import os

GRAPH_FILES = ("model.json", "model.pdmodel")


def graph_file(model_dir: str) -> str | None:
    """The directory's graph file, new IR first; None when it has neither."""
    for name in GRAPH_FILES:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    return None


def missing_files(model_dir: str) -> list[str]:
    """What an exported model directory lacks (empty when complete)."""
    missing = [] if graph_file(model_dir) else [" or ".join(GRAPH_FILES)]
    missing += [n for n in ("model.pdiparams", "infer_cfg.yml") if not os.path.isfile(os.path.join(model_dir, n))]
    return missing
