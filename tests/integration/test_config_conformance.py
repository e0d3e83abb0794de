"""trainctl's resolver against PaddleDetection's own load_config, on 685 reference configs.

What is compared: ppdet's `load_config(path)` merges the file's layers into the module
global `ppdet.core.workspace.global_config`, which also holds a SchemaDict for every
registered class; merging into it fills config sections with constructor defaults, so
its result is not "what the file says". The worker below therefore gives ppdet a fresh,
empty `global_config` before each file and then calls the real `load_config`: the
result is exactly the mapping ppdet builds from the file and its `_BASE_` layers
(including its merge order, aliasing and `filename`), without the registry. This is the
same mapping `_load_config_with_base(path)` plus `filename` produces, but through the
public entry point.

Tagged values: trainctl keeps `!Name` nodes as `Tagged(name, value)`; ppdet constructs
an object. They count as equal when the object's class is `Name` and every field written
in the YAML equals the object's attribute of that name (recursively); a tagged sequence
(`!Name [a, b]`) is matched to the constructor's positional parameters.

dump_yaml: each resolved config is also written flat with `dump_yaml` and loaded back by
ppdet's `load_config`; the objects must equal those built from the layered original.

Everything runs in one subprocess (this file run as a script) that imports ppdet once.
"""

from __future__ import annotations

import contextlib
import io
import inspect
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "paddledet-2.6-configs"

# The configs ppdet 2.6.0 itself cannot load here (its constructors reject arguments or
# missing paths). If this list changes, either ppdet or the reference corpus changed.
PPDET_FAILS = {
    # KeypointBottomUpCocoDataset.__init__() got an unexpected keyword argument 'return_bbox'
    "keypoint/higherhrnet/higherhrnet_hrnet_w32_512.yml",
    "keypoint/higherhrnet/higherhrnet_hrnet_w32_512_swahr.yml",
    "keypoint/higherhrnet/higherhrnet_hrnet_w32_640.yml",
    # ... unexpected keyword argument 'return_mask'
    "keypoint/petr/petr_resnet50_16x2_coco.yml",
    # the dataset constructor lists data/medical/multi_frames/train, which does not exist
    "pose3d/tinypose3d_medical_multi_frames.yml",
    "pose3d/tinypose3d_multi_frames_heatmap.yml",
}


# ------------------------------------------------------------------ worker (runs with ppdet)

def _equal(ours, theirs, where: str, diffs: list) -> bool:
    from trainctl.config import Tagged

    if isinstance(ours, Tagged):
        if type(theirs).__name__ != ours.tag:
            diffs.append(f"{where}: tag !{ours.tag} but ppdet built {type(theirs).__name__}")
            return False
        fields = ours.value
        if isinstance(fields, list):
            params = [p for p in inspect.signature(type(theirs).__init__).parameters][1:]
            fields = dict(zip(params, fields))
        if not isinstance(fields, dict):
            return True  # a tagged scalar: ppdet would not even build it
        field_diffs: list = []
        ok = True
        for key, value in fields.items():
            if not hasattr(theirs, key):
                field_diffs.append(f"{where}.{key}: !{ours.tag} object has no attribute {key}")
                ok = False
            elif not _equal(value, getattr(theirs, key), f"{where}.{key}", field_diffs):
                ok = False
        if ok:
            return True
        # The constructor rewrote some fields (PiecewiseDecay turns gamma 0.1 into
        # [0.1, 0.01]; keypoint datasets move num_joints into ann_info): then let ppdet
        # build the object from trainctl's written YAML and compare the two objects.
        if _same_object(_build_with_ppdet(ours), theirs):
            return True
        diffs.extend(field_diffs)
        return False
    if isinstance(ours, dict):
        if not isinstance(theirs, dict) or set(ours) != set(theirs):
            diffs.append(f"{where}: keys differ: {sorted(map(str, ours))} vs "
                         f"{sorted(map(str, theirs)) if isinstance(theirs, dict) else type(theirs).__name__}")
            return False
        return all([_equal(ours[k], theirs[k], f"{where}.{k}", diffs) for k in ours])
    if isinstance(ours, list):
        if not isinstance(theirs, (list, tuple)) or len(ours) != len(theirs):
            diffs.append(f"{where}: list {ours!r} vs {theirs!r}")
            return False
        return all([_equal(a, b, f"{where}.{i}", diffs) for i, (a, b) in enumerate(zip(ours, theirs))])
    if type(ours) is not type(theirs) and not (isinstance(ours, (int, float)) and isinstance(theirs, (int, float))
                                              and not isinstance(ours, bool) and not isinstance(theirs, bool)):
        diffs.append(f"{where}: {ours!r} ({type(ours).__name__}) vs {theirs!r} ({type(theirs).__name__})")
        return False
    if ours != theirs:
        diffs.append(f"{where}: {ours!r} vs {theirs!r}")
        return False
    return True


def _build_with_ppdet(tagged):
    """The object ppdet's own YAML loader builds from trainctl's dump of a tagged value."""
    import yaml

    from trainctl.config import dump_yaml

    with contextlib.redirect_stdout(io.StringIO()):
        return yaml.load(dump_yaml({"value": tagged}), Loader=yaml.Loader)["value"]


def _same_object(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same_object(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_object(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return _same_object(vars(a), vars(b))
    if type(a).__module__ == "numpy":
        import numpy

        return bool(numpy.array_equal(a, b))
    return a == b


def _negative_controls(reference: Path, workspace) -> list[bool]:
    """The comparison must see a changed leaf, a changed tagged field and a changed tag."""
    from trainctl.config import Tagged, resolve

    path = reference / "yolov3" / "yolov3_darknet53_270e_coco.yml"  # uses !PiecewiseDecay
    workspace.global_config = workspace.AttrDict()
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = dict(workspace.load_config(str(path)))
    detected = []
    for change in ("leaf", "tagged field", "tag"):
        ours = resolve(path).data
        if change == "leaf":
            ours["TrainReader"]["batch_size"] += 1
        elif change == "tagged field":
            ours["LearningRate"]["schedulers"][0].value["milestones"] = [1, 2]
        else:
            first = ours["LearningRate"]["schedulers"][0]
            ours["LearningRate"]["schedulers"][0] = Tagged("CosineDecay", first.value)
        detected.append(not _equal(ours, theirs, "", []))
    return detected


def run_worker(reference: Path) -> dict:
    started = time.time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import ppdet.engine  # noqa: F401  (registers every class and YAML tag)
        from ppdet.core import workspace
    from trainctl.config import dump_yaml, resolve

    scratch = Path(tempfile.mkdtemp(prefix="trainctl-conformance-"))
    import_seconds = time.time() - started
    result = {"configs": 0, "ppdet_failed": {}, "compared": 0, "equal": 0, "mismatches": {}, "trainctl_failed": {},
              "reload_equal": 0, "reload_mismatches": {}}
    for path in sorted(reference.rglob("*.yml")):
        name = path.relative_to(reference).as_posix()
        result["configs"] += 1
        workspace.global_config = workspace.AttrDict()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                theirs = workspace.load_config(str(path))
        except Exception as exc:  # noqa: BLE001  (ppdet's own failures are recorded, not hidden)
            result["ppdet_failed"][name] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        try:
            ours = resolve(path).data
        except Exception as exc:  # noqa: BLE001
            result["trainctl_failed"][name] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        result["compared"] += 1
        diffs: list[str] = []
        if _equal(ours, dict(theirs), "", diffs):
            result["equal"] += 1
        else:
            result["mismatches"][name] = diffs[:5]
        # dump_yaml's flat file must load in ppdet to the same objects as the layered original
        flat = scratch / name.replace("/", "__").rsplit("__", 1)[0] / path.name
        flat.parent.mkdir(parents=True, exist_ok=True)
        flat.write_text(dump_yaml(ours))
        original = dict(theirs)
        workspace.global_config = workspace.AttrDict()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                reloaded = dict(workspace.load_config(str(flat)))
        except Exception as exc:  # noqa: BLE001
            result["reload_mismatches"][name] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        if _same_object(reloaded, original):
            result["reload_equal"] += 1
        else:
            result["reload_mismatches"][name] = "ppdet built different objects from the dumped YAML"
    shutil.rmtree(scratch, ignore_errors=True)
    result["negative_controls"] = _negative_controls(reference, workspace)
    result["import_seconds"] = round(import_seconds, 1)
    result["seconds"] = round(time.time() - started, 1)
    return result


# ------------------------------------------------------------------ the test

@pytest.mark.paddle
def test_every_reference_config_resolves_like_ppdet():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference configs not found at {REFERENCE}")
    proc = subprocess.run([sys.executable, __file__, str(REFERENCE)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nconformance: {result['configs']} configs, {len(result['ppdet_failed'])} fail in ppdet, "
          f"{result['compared']} compared, {result['equal']} equal, {result['reload_equal']} equal after "
          f"dump_yaml and ppdet's reload ({result['seconds']} s, "
          f"ppdet import {result['import_seconds']} s)")
    assert result["negative_controls"] == [True, True, True], "the comparison cannot see differences"
    assert result["configs"] == 685
    assert set(result["ppdet_failed"]) == PPDET_FAILS, result["ppdet_failed"]
    assert len(result["ppdet_failed"]) == 6
    assert result["trainctl_failed"] == {}
    assert result["mismatches"] == {}
    assert result["compared"] == 679
    assert result["equal"] == 679
    assert result["reload_mismatches"] == {}
    assert result["reload_equal"] == 679


if __name__ == "__main__":
    print(json.dumps(run_worker(Path(sys.argv[1]))))
