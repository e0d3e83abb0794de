"""`trainctl runs compare`: runs grouped by the config values that differ, their final loss and best
metric over seeds, and the curves (`--plot`, matplotlib only then). Pure, no paddle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainctl.core.checkpoints import INDEX_FILE, read_index
from trainctl.errors import UserError
from trainctl.runs.listing import CONFIG_FILE, best_metric, find_run_dirs, metric_of, read_json, record_file
from trainctl.runs.table import display_path


# ------------------------------------------------------------------ compare

HISTORY_FILE = "history.jsonl"  # runner/monitor.py (LossHistory): one {"epoch", "step", "loss"} per training step
_MISSING = "(unset)"


def flatten_config(data, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": [1, {"c": 2}]}} -> {"a.b.0": 1, "a.b.1.c": 2}; a !Tag node adds KEY.!tag."""
    from trainctl.config.yamlio import Tagged

    flat: dict[str, object] = {}
    if isinstance(data, Tagged):
        flat[f"{prefix}!tag" if not prefix else f"{prefix}.!tag"] = data.tag
        flat.update(flatten_config(data.value, prefix))
    elif isinstance(data, dict):
        for key, value in data.items():
            flat.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and any(isinstance(v, (dict, list, Tagged)) for v in data):
        for i, value in enumerate(data):
            flat.update(flatten_config(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        flat[prefix] = data
    return flat


def read_history(run_dir: Path) -> list[dict]:
    rows = []
    try:
        with open(run_dir / HISTORY_FILE) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)):
                    rows.append(row)
    except OSError:
        pass
    return rows


def final_loss(history: list[dict]) -> float | None:
    """The mean loss over the last epoch's steps (one step's loss is too noisy to compare)."""
    if not history:
        return None
    last = history[-1].get("epoch")
    values = [row["loss"] for row in history if row.get("epoch") == last]
    return sum(values) / len(values)


def eval_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, metric value) of every evaluation during training (checkpoints.json)."""
    if not (run_dir / INDEX_FILE).is_file():
        return []
    points = []
    for entry in read_index(run_dir).get("evals") or []:
        found = metric_of(entry.get("results") or {})
        if found and isinstance(entry.get("epoch"), int):
            points.append((entry["epoch"], found[1]))
    return points


def _mean_std(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
    return {"mean": mean, "std": std, "n": len(values)}


def compare_runs(dirs: list[str]) -> dict:
    """What differs between the runs under dirs (from their resolved config.yml), and how they did.

    Returns {"keys": [the config keys whose values differ], "runs": [...], "groups": [...]}:
    a run has its values of those keys, seed, final loss, best metric and its epoch; a group
    is the runs with the same values (repeats with other seeds), with mean and standard
    deviation of the final loss and the best metric."""
    from trainctl.config.yamlio import load_yaml_file

    found: list[Path] = []
    for directory in dirs:
        if not os.path.isdir(directory):
            raise UserError(f"no such directory: {directory}", hint="pass run directories or a sweep directory")
        for run_dir in find_run_dirs(directory):
            if all(os.path.realpath(run_dir) != os.path.realpath(seen) for seen in found):
                found.append(run_dir)
    runs = []
    for run_dir in found:
        record, _ = read_json(record_file(run_dir))
        record = record or {}
        if (record.get("task") or (record.get("plan") or {}).get("task")) == "eval" or not (run_dir / CONFIG_FILE).is_file():
            continue
        runs.append((run_dir, record, flatten_config(load_yaml_file(run_dir / CONFIG_FILE))))
    if len(runs) < 2:
        raise UserError(f"{len(runs)} training run{'s' if len(runs) != 1 else ''} found under {', '.join(dirs)}; "
                        "compare needs at least 2", hint="pass two or more run directories, or a sweep directory")
    all_keys = sorted(set().union(*(flat.keys() for _, _, flat in runs)))
    keys = [k for k in all_keys if k != "filename" and len({repr(flat.get(k, _MISSING)) for _, _, flat in runs}) > 1]
    out_runs = []
    for run_dir, record, flat in runs:
        history = read_history(run_dir)
        best = best_metric(run_dir)
        out_runs.append({
            "run_dir": display_path(str(run_dir)),
            "values": {k: flat.get(k, _MISSING) for k in keys},
            "seed": record.get("seed"),
            "status": record.get("status"),
            "final_loss": final_loss(history),
            "best": {"metric": best["metric"], "value": best["value"], "epoch": best.get("epoch")} if best else None,
            "loss_curve": [[row["step"], row["epoch"], row["loss"]] for row in history],
            "eval_curve": [list(p) for p in eval_curve(run_dir)],
        })
    groups: dict[str, dict] = {}
    for run in out_runs:
        key = json.dumps(run["values"], sort_keys=True, default=str)
        groups.setdefault(key, {"values": run["values"], "runs": []})["runs"].append(run)
    out_groups = []
    for group in groups.values():
        members = group["runs"]
        out_groups.append({
            "values": group["values"],
            "runs": [r["run_dir"] for r in members],
            "seeds": [r["seed"] for r in members],
            "final_loss": _mean_std([r["final_loss"] for r in members]),
            "best": _mean_std([r["best"]["value"] if r["best"] else None for r in members]),
            "best_epoch": _mean_std([r["best"]["epoch"] if r["best"] and r["best"].get("epoch") is not None else None for r in members]),
            "metric": next((r["best"]["metric"] for r in members if r["best"]), None),
        })
    return {"keys": keys, "runs": out_runs, "groups": out_groups}


def _fmt_stat(stat: dict | None, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    if not stat:
        return "-"
    text = f"{stat['mean'] * scale:.{digits}f}"
    if stat.get("std") is not None:
        text += f" ± {stat['std'] * scale:.{digits}f}"
    return text + unit


def _fmt_value(value) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def compare_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """One row per setting (its repeats as mean ± std): RUN(S), the differing keys, seeds, loss, metric, epoch."""
    keys = result["keys"]
    metric = next((g["metric"] for g in result["groups"] if g["metric"]), "metric")
    headers = ["RUN" if all(len(g["runs"]) == 1 for g in result["groups"]) else "RUNS", *keys, "SEED",
               "FINAL LOSS", f"BEST {metric} mAP %", "AT EPOCH"]
    rows = []
    for g in result["groups"]:
        label = g["runs"][0] if len(g["runs"]) == 1 else _group_label(g["runs"])
        seeds = ",".join("-" if s is None else str(s) for s in g["seeds"])
        rows.append([label, *(_fmt_value(g["values"][k]) for k in keys), seeds, _fmt_stat(g["final_loss"]),
                     _fmt_stat(g["best"], 100.0, 2), _fmt_stat(g["best_epoch"], digits=1 if len(g["runs"]) > 1 else 0)])
    return headers, rows


def _group_label(run_dirs: list[str]) -> str:
    """'sw/batch_size=4,seed=0' and 'sw/batch_size=4,seed=1' -> 'sw/batch_size=4 (2 runs)'."""
    parent = os.path.dirname(run_dirs[0]) if len({os.path.dirname(d) for d in run_dirs}) == 1 else ""
    names = [os.path.basename(d) for d in run_dirs]
    common = os.path.commonprefix(names)
    if common not in names:
        common = common.rsplit(",", 1)[0] if "," in common else common.rstrip("_-=")
    return (os.path.join(parent, common) if common and parent else (common or parent or "…")) + f" ({len(run_dirs)} runs)"


def _label(run: dict, keys: list[str]) -> str:
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    parts = [f"{short[k]}={_fmt_value(run['values'][k])}" for k in keys]
    if run.get("seed") is not None:
        parts.append(f"seed={run['seed']}")
    return ", ".join(parts) or run["run_dir"]


def plot_compare(result: dict, path: str) -> int:
    """Loss (by epoch, from every step) and metric (by epoch) curves of every run on shared axes; returns curves drawn.

    matplotlib is imported here only (the optional `plot` extra)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise UserError("--plot needs matplotlib", hint="pip install 'trainctl[plot]' (or pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainctl.fsutil import atomic_write_bytes

    keys, runs = result["keys"], result["runs"]
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    group_of = {r: i for i, g in enumerate(result["groups"]) for r in g["runs"]}
    seen: dict[int, int] = {}
    drawn = 0
    for run in runs:
        group = group_of[run["run_dir"]]
        style = ["-", "--", ":", "-."][seen.get(group, 0) % 4]
        seen[group] = seen.get(group, 0) + 1
        color = colors[group % len(colors)]
        label = _label(run, keys)
        curve = run["loss_curve"]
        if curve:
            per_epoch: dict[int, int] = {}
            for _, epoch, _ in curve:
                per_epoch[epoch] = per_epoch.get(epoch, 0) + 1
            xs = []
            for step, epoch, _ in curve:  # steps within an epoch spread over (epoch-1, epoch]
                first = sum(n for e, n in per_epoch.items() if e < epoch)
                xs.append(epoch - 1 + (step - first) / per_epoch[epoch])
            window = max(1, len(curve) // 40)
            ys = [sum(c[2] for c in curve[max(0, i - window + 1):i + 1]) / len(curve[max(0, i - window + 1):i + 1]) for i in range(len(curve))]
            ax_loss.plot(xs, ys, style, color=color, label=label, linewidth=1.3)
        points = run["eval_curve"]
        if points:
            ax_map.plot([p[0] for p in points], [100 * p[1] for p in points], style, marker="o", markersize=3, color=color, label=label)
        if curve or points:
            drawn += 1
    metric = next((g["metric"] for g in result["groups"] if g["metric"]), "metric")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    if any(run["loss_curve"] for run in runs) and all(c[2] > 0 for run in runs for c in run["loss_curve"]):
        ax_loss.set_yscale("log")  # a diverging run would flatten every other curve
        ax_loss.set_ylabel("training loss (log scale)")
    ax_map.set(xlabel="epoch", ylabel=f"{metric} mAP (%)", title="evaluation")
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
    handles, labels = ax_loss.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_map.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(2, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * ((len(labels) + 1) // 2 if handles else 0), 1, 1))
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Description": json.dumps({"trainctl_curves": drawn, "runs": len(runs)})})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return drawn
