"""ONNX Runtime predictor over an exported model directory that holds model.onnx (`trainctl export --format onnx`).

The same interface as Paddle Inference's `predict.ExportedModel` (labels, preprocess, run, rows_for,
detect_batch, detect_arrays, detect_sliced, detect), so `trainctl infer --engine onnxruntime` keeps the
preprocessing (infer_cfg.yml's Preprocess list, trainctl's own Preprocessor), thresholds and outputs.

One image per ONNX Runtime run: paddle2onnx converts multiclass_nms3 for batch size 1 only
("the exported ONNX model will only supports inference with input batch_size == 1"), so --batch-size
groups images for reading, not for the session.
"""

from __future__ import annotations

import os

from trainctl.core import onnx_policy
from trainctl.errors import RuntimeFailure, UserError
from trainctl.core.hostinfo import cpu_count
from trainctl.runner import predict
from trainctl.runner.predictor_config import PredictorOptions


def read_infer_cfg(model_dir: str) -> dict:
    import yaml

    path = os.path.join(model_dir, "infer_cfg.yml")
    if not os.path.isfile(path):
        raise UserError(f"{model_dir} is not an exported model (no infer_cfg.yml)",
                        hint="make one with `trainctl export -c CFG --weights W --output DIR`")
    with open(path) as f:
        return yaml.safe_load(f) or {}


def require_onnx(model_dir: str) -> str:
    path = os.path.join(model_dir, onnx_policy.ONNX_FILE)
    if not os.path.isfile(path):
        raise UserError(f"--engine onnxruntime: {model_dir} has no {onnx_policy.ONNX_FILE}",
                        hint="export it with `trainctl export ... --format onnx`, or use --engine paddle")
    return path


class OnnxModel(predict.ExportedModel):
    """model.onnx in ONNX Runtime (CPU), fed by the Preprocess steps of infer_cfg.yml."""

    engine = "onnxruntime"

    def __init__(self, model_dir: str, threads: int | None = None, options: PredictorOptions | None = None):
        path = require_onnx(model_dir)
        onnx_policy.require_packages(("onnxruntime",), "--engine onnxruntime")
        self.model_dir = model_dir
        self.infer_cfg = read_infer_cfg(model_dir)
        self.labels = [str(x) for x in self.infer_cfg.get("label_list", [])]
        self.preprocess = predict.Preprocessor(self.infer_cfg.get("Preprocess", []))
        self.threads = max(1, threads or cpu_count())
        self.options = options or PredictorOptions(device="cpu", threads=self.threads, onednn=False)
        self.onednn_requested = False
        self.pads_safely = False  # one image per run: nothing is padded
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only: paddle2onnx leaves unused initializers ORT warns about
        try:
            self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeFailure(f"ONNX Runtime cannot load {path}: {first}",
                                 hint="export it again with `trainctl export ... --format onnx`") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = None

    def onednn_enabled(self) -> bool:
        return False

    def run(self, inputs: dict):
        """Run on one preprocessed image; return (rows [class, score, x1, y1, x2, y2], counts)."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise RuntimeFailure(f"model.onnx wants inputs {', '.join(missing)} that infer_cfg.yml's preprocessing does not make")
        try:
            outs = self.session.run(None, {n: inputs[n] for n in self.input_names})
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeFailure(f"ONNX Runtime failed on input {list(inputs['image'].shape)}: {first}",
                                 hint="try --engine paddle") from exc
        rows = outs[0].reshape(-1, outs[0].shape[-1]) if outs[0].size else outs[0].reshape(0, 6)
        counts = outs[1].reshape(-1) if len(outs) > 1 else [len(rows)]
        return rows, counts

    def rows_for(self, rgbs: list) -> list:
        per_image = []
        for rgb in rgbs:
            rows, counts = self.run(self.preprocess(rgb))
            per_image.append(predict.split_rows(rows, counts, 1)[0])
        return per_image


class JsonPaddleModel(predict.ExportedModel):
    """Paddle Inference on a new-IR export (model.json), for the ONNX check when the directory has no model.pdmodel.

    (`predict.ExportedModel` reads model.pdmodel; a model.json reader there supersedes this.)"""

    engine = "paddle"

    def __init__(self, model_dir: str, threads: int | None = None, onednn: bool = False):
        from paddle import inference

        from trainctl.runner.predictor_config import apply_calls, predictor_calls

        self.model_dir = model_dir
        self.infer_cfg = read_infer_cfg(model_dir)
        self.labels = [str(x) for x in self.infer_cfg.get("label_list", [])]
        self.preprocess = predict.Preprocessor(self.infer_cfg.get("Preprocess", []))
        self.threads = max(1, threads or cpu_count())
        self.options = PredictorOptions(device="cpu", threads=self.threads, onednn=onednn)
        self.onednn_requested = onednn
        self.pads_safely = self.infer_cfg.get("arch") not in predict.GRID_RELATIVE_ARCHS
        config = inference.Config(os.path.join(model_dir, "model.json"), os.path.join(model_dir, "model.pdiparams"))
        # without enable_memory_optim: with it, paddle 3.3.1 fails on a model.json ("Not find predictor_id 0
        # and pass_name memory_optimize_pass")
        calls = [c for c in predictor_calls(self.options, model_dir) if c[0] != "enable_memory_optim"]
        apply_calls(config, calls, inference.PrecisionType)
        self.config = config
        self.predictor = inference.create_predictor(config)
        self._inputs = {name: self.predictor.get_input_handle(name) for name in self.predictor.get_input_names()}
        self._outputs = [self.predictor.get_output_handle(name) for name in self.predictor.get_output_names()]


def paddle_model(model_dir: str, threads: int | None = None, onednn: bool = True) -> predict.ExportedModel:
    """Paddle Inference on the directory's model.pdmodel, or its model.json."""
    if os.path.isfile(os.path.join(model_dir, "model.pdmodel")):
        return predict.ExportedModel(model_dir, threads=threads, onednn=onednn)
    if os.path.isfile(os.path.join(model_dir, "model.json")):
        # oneDNN off: with it, paddle 3.3.1 fails on its own model.json ("ConvertPirAttribute2RuntimeAttribute
        # not support [pir::ArrayAttribute<pir::DoubleAttribute>]", the f64 arrays of onnx_policy's docstring)
        return JsonPaddleModel(model_dir, threads=threads, onednn=False)
    raise UserError(f"{model_dir} is not an exported model (no model.pdmodel or model.json)")


def check_engine_inputs(engine: str, model_dir: str | None, device: str | None, run_mode: str) -> None:
    """`trainctl infer --engine`, before paddle: onnxruntime needs --model-dir with model.onnx, on the CPU."""
    onnx_policy.check_engine(engine)
    if engine != "onnxruntime":
        return
    if not model_dir:
        raise UserError("--engine onnxruntime works on an exported model (--model-dir)",
                        hint="export with `trainctl export ... --format onnx`")
    require_onnx(model_dir)
    read_infer_cfg(model_dir)
    if device and device.lower() != "cpu":
        raise UserError(f"--engine onnxruntime runs on the CPU here (got --device {device})", hint="use --engine paddle for other devices")
    if run_mode != "paddle":
        raise UserError(f"--run-mode {run_mode} is for --engine paddle (TensorRT inside Paddle Inference)")
    onnx_policy.require_packages(("onnxruntime",), "--engine onnxruntime")


def exported_model(model_dir: str, engine: str, threads: int, make_paddle):
    """The predictor for `--engine`: OnnxModel, or what make_paddle() builds (Paddle Inference)."""
    if engine == "onnxruntime":
        return OnnxModel(model_dir, threads=threads)
    return make_paddle()
