"""What train, eval, export and infer share inside a paddle process.

Load a flat config with ppdet's own loader, pick the device, check datasets
and weights before ppdet would fail on them (or start a download), and load
weights with messages a user can act on. Imports paddle and ppdet inside the
functions only.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainctl import output
from trainctl.errors import UserError
from trainctl.weights import resolve_weights, strip_suffix


_chosen_ppdet = None  # the PpdetSource this process imports (use_ppdet / use_source)
_announce = False  # load_flat_config says which ppdet it imported (export, infer -c; workers log their own)


def use_source(src, announce: bool = False) -> None:
    """Make this process import `src`'s ppdet (before the first `import ppdet`); load_flat_config verifies it."""
    global _chosen_ppdet, _announce
    from trainctl.core import ppdet_source

    ppdet_source.activate(src)
    _chosen_ppdet, _announce = src, announce


def use_ppdet(flag: str | None):
    """For in-process commands (export, infer -c): the rule's choice, checked to import, activated."""
    from trainctl.core import ppdet_checks, ppdet_source

    src = ppdet_source.choose(flag)
    ppdet_checks.check_importable(src)
    use_source(src, announce=True)
    return src


def chosen_ppdet():
    return _chosen_ppdet


def load_flat_config(path: str | os.PathLike):
    """ppdet's load_config on a resolved config; returns ppdet's global config (an AttrDict)."""
    from trainctl.runner.compat import import_quietly, quiet_ppdet_warnings

    quiet_ppdet_warnings()
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}", hint="check the path, or pass a bundled config name such as roadsign.yml")
    import_quietly("ppdet")
    if _chosen_ppdet is not None:
        from trainctl.core.ppdet_source import verify

        verify(_chosen_ppdet)  # ppdet came from where the rule said
        if _announce:
            output.info(f"ppdet: {_chosen_ppdet.describe()}")
    from ppdet.core.workspace import load_config

    try:
        cfg = load_config(path)
    except Exception as exc:  # ppdet raises bare exceptions on bad keys and YAML
        raise UserError(f"ppdet cannot load config {path}: {type(exc).__name__}: {exc}", hint="check the config with `trainctl config show`") from exc
    from trainctl.runner.compat import drop_unsupported_nms_args

    dropped = drop_unsupported_nms_args(cfg)
    if dropped:
        output.info(f"this ppdet's MultiClassNMS has no {', '.join(dropped)}: left out (a newer PaddleDetection's key)")
    return cfg


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment, before paddle.distributed is set up."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0")), int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def cuda_available() -> bool:
    import paddle

    try:
        return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    except Exception:
        return False


def setup_device(cfg, device: str = "auto", world_size: int = 1) -> str:
    """Set paddle's device and the config's use_* flags to what this machine has.

    A config's `use_gpu: true` on a CPU-only machine becomes CPU (ppdet would
    raise in check_gpu); sync_bn becomes bn where it cannot work (CPU or one
    device), as PaddleDetection's tools do.
    """
    import paddle

    use_gpu = device in ("gpu", "auto") and cuda_available()
    if device == "gpu" and not use_gpu:
        output.warn("paddle has no usable CUDA device here; running on CPU")
    cfg["use_gpu"] = use_gpu
    for flag in ("use_xpu", "use_npu", "use_mlu"):
        cfg[flag] = False
    if cfg.get("norm_type") == "sync_bn" and (not use_gpu or world_size < 2):
        cfg["norm_type"] = "bn"
    place = "gpu" if use_gpu else "cpu"
    if use_gpu and os.environ.get("FLAGS_selected_gpus"):
        place = f"gpu:{os.environ['FLAGS_selected_gpus'].split(',')[0]}"
    paddle.set_device(place)
    return place


def _field(obj, name: str):
    """A field of a dataset entry: ppdet keeps them as SchemaDicts (dicts) before create(), objects after."""
    if isinstance(obj, dict):
        try:
            return obj[name]
        except KeyError:
            return None
    return getattr(obj, name, None)


def _set_field(obj, name: str, value) -> None:
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


def dataset_problem(cfg, key: str) -> str | None:
    """Why the dataset of cfg[key] (TrainDataset, EvalDataset) is unusable, or None."""
    ds = cfg.get(key)
    if ds is None:
        return f"the config has no {key}"
    dataset_dir = _field(ds, "dataset_dir") or ""
    anno_path = _field(ds, "anno_path") or ""
    if dataset_dir and not os.path.isdir(dataset_dir):
        return f"dataset directory {dataset_dir} ({key}) does not exist"
    anno = os.path.join(dataset_dir, anno_path) if anno_path else None
    if anno and not os.path.exists(anno):
        return f"annotation file {anno} ({key}) does not exist"
    return None


def check_datasets(cfg, keys: list[str]) -> None:
    """Fail with a UserError instead of letting ppdet try to download a missing dataset."""
    for key in keys:
        problem = dataset_problem(cfg, key)
        if problem:
            ds = cfg.get(key)
            target = _field(ds, "dataset_dir") or "dataset/roadsign_voc"
            raise UserError(
                problem,
                hint=f"run from the directory that holds it, set -o {key}.dataset_dir=PATH, "
                f"or make the synthetic sample with `trainctl data sample --out {target}`",
            )


def label_list_candidates(cfg, weights: str | None = None) -> list[str]:
    out = []
    test = cfg.get("TestDataset")
    if test is not None and _field(test, "anno_path"):
        out.append(os.path.join(_field(test, "dataset_dir") or "", _field(test, "anno_path")))
    for key in ("EvalDataset", "TrainDataset"):
        ds = cfg.get(key)
        if ds is not None and _field(ds, "label_list"):
            out.append(os.path.join(_field(ds, "dataset_dir") or "", _field(ds, "label_list")))
    if weights:
        out.append(str(Path(weights).parent / "label_list.txt"))  # copied there by training
    return out


def ensure_test_labels(cfg, weights: str | None = None) -> str | None:
    """Point TestDataset at a label list that exists (the dataset's, or the run dir's copy).

    Without one, ppdet silently names classes after the 20 VOC classes.
    """
    for candidate in label_list_candidates(cfg, weights):
        if os.path.isfile(candidate):
            test = cfg.get("TestDataset")
            if test is not None:
                _set_field(test, "dataset_dir", None)
                _set_field(test, "anno_path", candidate)
            return candidate
    return None


def read_label_list(path: str | None) -> list[str]:
    if not path:
        return []
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def _load_state(path: str) -> dict:
    import paddle

    try:
        state = paddle.load(path)
    except Exception as exc:
        raise UserError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}", hint="the file is damaged or not a paddle .pdparams file") from exc
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} holds no parameter dict", hint="pass a .pdparams file written by training")
    return state


def shape_mismatches(model_state: dict, weights_state: dict) -> tuple[list[str], list[str]]:
    """(model keys missing from the weights, keys whose shapes differ)."""
    missing = [k for k in model_state if k not in weights_state]
    differ = [
        k for k, v in model_state.items() if k in weights_state and list(getattr(weights_state[k], "shape", [])) != list(v.shape)
    ]
    return missing, differ


def load_weights_strict(model, weights: str, architecture: str = "") -> str:
    """Load every parameter of the model from weights (eval, infer, export); a mismatch is a UserError."""
    path = resolve_weights(weights, "weights")
    state = _load_state(path)
    model_state = model.state_dict()
    missing, differ = shape_mismatches(model_state, state)
    if missing or differ:
        example = (missing or differ)[0]
        raise UserError(
            f"weights {path} do not fit the {architecture or 'model'} of this config: "
            f"{len(missing)} of {len(model_state)} parameters missing, {len(differ)} with other shapes (e.g. {example})",
            hint="use weights trained with this config (same architecture and num_classes)",
        )
    model.set_dict({k: state[k] for k in model_state})
    return path


def load_weights_finetune(model, weights: str) -> tuple[str, list[str]]:
    """Load the parameters that fit (train --weights); return the path and the skipped names."""
    path = resolve_weights(weights, "weights")
    state = _load_state(path)
    model_state = model.state_dict()
    missing, differ = shape_mismatches(model_state, state)
    usable = {k: state[k] for k in model_state if k in state and k not in differ}
    if not usable:
        raise UserError(
            f"weights {path} share no parameter with this model",
            hint="they come from another architecture; pass weights of this model",
        )
    model.set_dict(usable)
    return path, sorted(missing + differ)


def resume_path(value: str, run_dir: str) -> str | None:
    """The checkpoint stem for --resume (a path, or 'auto' for the run's newest complete one)."""
    from trainctl.runner.checkpoint import checkpoint_stem, latest_checkpoint

    if value == "auto":
        entry = latest_checkpoint(run_dir)
        return checkpoint_stem(run_dir, entry) if entry else None
    path = resolve_weights(value, "resume")
    stem = strip_suffix(path)
    if not os.path.isfile(stem + ".pdopt"):
        raise UserError(
            f"checkpoint {stem} has no optimizer state ({stem}.pdopt)",
            hint="resume needs a training checkpoint; to start from weights only use --weights",
        )
    return stem


def write_flat_config(config: str, overrides: list[str] | tuple[str, ...], directory: str | os.PathLike) -> tuple[str, object]:
    """Resolve a layered config (path or bundled name) plus -o overrides into one flat file
    that ppdet's load_config reads; returns (path, ResolvedConfig). Pure: no paddle."""
    from trainctl.config import dump_yaml, resolve
    from trainctl.fsutil import atomic_write_text

    rc = resolve(config, overrides=list(overrides))
    path = Path(directory) / f"{rc.name}.yml"
    atomic_write_text(path, dump_yaml(rc.data))
    return str(path), rc


def flat_config_and_weights(config: str, overrides: list[str] | tuple[str, ...], weights: str | None,
                            directory: str | os.PathLike, purpose: str) -> tuple[str, object, str]:
    """write_flat_config, then the weights to use: `weights`, else the config's `weights`, checked to exist.

    `purpose` completes the error "no weights <purpose>" ("for inference", "to export").
    Returns (flat config path, ResolvedConfig, weights path). Pure: no paddle.
    """
    flat, rc = write_flat_config(config, overrides, directory)
    weights = weights or rc.get("weights")
    if not weights:
        raise UserError(f"no weights {purpose}", hint="pass --weights PATH (e.g. output/<config>/model_final)")
    return flat, rc, resolve_weights(weights, "weights")
