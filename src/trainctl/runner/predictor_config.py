"""Which Paddle Inference configuration each --device and --run-mode makes (pure, no paddle at import).

`predictor_calls(options, model_dir)` turns the options into the ordered list
of `paddle.inference.Config` method calls (name, args, kwargs); `apply_calls`
makes them on a real Config. Keeping the choice as data lets the tests check
every mode's configuration on a machine without a GPU or TensorRT: the
CPU-buildable calls on paddle's real Config (its getters), the GPU/TensorRT
ones on a recording stand-in (paddle's CPU build raises for those).

The calls follow PaddleDetection's deploy/python/infer.py (load_predictor):

- cpu: disable_gpu, set_cpu_math_library_num_threads, oneDNN on or off;
- gpu[:N]: enable_use_gpu(200 MB, N), switch_ir_optim(True);
- xpu[:N]: enable_xpu, set_xpu_device_id; npu[:N]: enable_custom_device("npu", N);
- trt_fp32/trt_fp16/trt_int8 (gpu only): enable_tensorrt_engine(workspace
  (1 << 25) * batch, max_batch_size=batch, min_subgraph_size, precision,
  use_static=False, use_calib_mode) where use_calib_mode is on for trt_int8
  unless the model is already quantized (--no-trt-calib); dynamic input
  shapes: with --collect-trt-shapes, collect_shape_range_info(<model
  dir>/shape_range_info.pbtxt) (a first run that records every tensor's
  min/max/opt shape), later runs enable_tuned_tensorrt_dynamic_shape(that
  file, True) when it exists;
- always: disable_glog_info, enable_memory_optim, switch_use_feed_fetch_ops(False);
- a new-IR model (model.json, paddle 3): enable_new_executor(True) first. Measured with paddle
  3.3.1 CPU on PP-YOLOE+ and YOLOv3 model.json files: enable_memory_optim without it fails in
  create_predictor ("Not find predictor_id 0 and pass_name memory_optimize_pass"); with it the
  predictor builds and runs. Old-IR models (model.pdmodel) keep the calls above unchanged.
  oneDNN: on by default for model.pdmodel, off by default for model.json (`onednn_default`): paddle
  3.3.1 saves some float attributes as doubles in model.json, and its oneDNN passes then fail on
  them (PP-YOLOE+: "ConvertPirAttribute2RuntimeAttribute not support
  [pir::ArrayAttribute<pir::DoubleAttribute>]", nearest_interp's scale; YOLOv3: a segfault building
  FusedConv2dOp from leaky_relu's double negative_slope). PaddleDetection's deploy/python/infer.py
  leaves oneDNN off by default too. `--onednn` asks for it anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from trainctl.errors import UserError

RUN_MODES = ("paddle", "trt_fp32", "trt_fp16", "trt_int8")
DEVICE_KINDS = ("cpu", "gpu", "xpu", "npu")
TRT_PRECISION = {"trt_fp32": "Float32", "trt_fp16": "Half", "trt_int8": "Int8"}  # paddle.inference.PrecisionType
SHAPE_FILE = "shape_range_info.pbtxt"
GPU_MEMORY_MB = 200


@dataclass(frozen=True)
class PredictorOptions:
    device: str = "cpu"  # cpu | gpu | gpu:N | xpu | xpu:N | npu | npu:N
    run_mode: str = "paddle"
    threads: int = 1
    onednn: bool | None = True  # None: the default for the model's format (onednn_default)
    batch_size: int = 1
    min_subgraph_size: int = 3
    trt_calib: bool = True  # trt_int8: calibrate (use_calib_mode); off for an already quantized model
    collect_trt_shapes: bool = False


def parse_device(text: str) -> tuple[str, int]:
    """'gpu:1' -> ('gpu', 1); 'CPU' -> ('cpu', 0). UserError for anything else."""
    kind, _, index = (text or "cpu").strip().lower().partition(":")
    if kind not in DEVICE_KINDS or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise UserError(f"--device {text!r} is not a device", hint="use cpu, gpu, gpu:N, xpu, xpu:N, npu or npu:N")
    return kind, int(index or 0)


def check_options(options: PredictorOptions, caps: dict) -> None:
    """Exit-2 errors for what this paddle cannot do; `caps` as paddle_caps() returns them."""
    kind, index = parse_device(options.device)
    if options.run_mode not in RUN_MODES:
        raise UserError(f"--run-mode {options.run_mode!r} is not one of {', '.join(RUN_MODES)}")
    if kind == "gpu":
        if not caps.get("cuda"):
            raise UserError("--device gpu: the installed paddle is built without CUDA (CPU only)",
                            hint="install paddlepaddle-gpu, or use --device cpu")
        if index >= caps.get("gpus", 0):
            raise UserError(f"--device {options.device}: paddle sees {caps.get('gpus', 0)} GPU(s)",
                            hint="check CUDA_VISIBLE_DEVICES and nvidia-smi")
    elif kind == "xpu" and not caps.get("xpu"):
        raise UserError("--device xpu: the installed paddle is built without XPU support",
                        hint="install paddle's XPU build, or use --device cpu")
    elif kind == "npu" and "npu" not in caps.get("custom", ()):
        raise UserError("--device npu: no 'npu' custom device plugin is installed for paddle",
                        hint="install paddle-custom-npu, or use --device cpu")
    if options.run_mode != "paddle":
        if kind != "gpu":
            raise UserError(f"--run-mode {options.run_mode} runs on TensorRT, which needs --device gpu (got {kind})",
                            hint="use --run-mode paddle on this device")
        if not caps.get("tensorrt"):
            raise UserError(f"--run-mode {options.run_mode}: the installed paddle is built without TensorRT",
                            hint="install a paddlepaddle-gpu build with TensorRT (see docs/deploy.md), or use --run-mode paddle")
    elif options.collect_trt_shapes:
        raise UserError("--collect-trt-shapes is for the TensorRT run modes", hint="add --run-mode trt_fp32/trt_fp16/trt_int8")


def paddle_caps() -> dict:
    """What the installed paddle can use (imports paddle)."""
    import paddle
    from paddle import inference

    caps = {"cuda": bool(paddle.is_compiled_with_cuda()), "gpus": 0, "xpu": bool(paddle.is_compiled_with_xpu()),
            "custom": [], "tensorrt": False}
    if caps["cuda"]:
        try:
            caps["gpus"] = int(paddle.device.cuda.device_count())
        except Exception:
            caps["gpus"] = 0
    try:
        caps["custom"] = list(paddle.device.get_all_custom_device_type())
    except Exception:
        pass
    try:
        caps["tensorrt"] = tuple(inference.get_trt_compile_version()) != (0, 0, 0)
    except Exception:
        caps["tensorrt"] = False
    return caps


def shape_file(model_dir: str) -> str:
    return os.path.join(model_dir, SHAPE_FILE)


def onednn_default(model_dir: str) -> bool:
    """oneDNN when the user did not say: on for an old-IR model, off for a new-IR one (see above)."""
    from trainctl.core.model_files import graph_file

    return not (graph_file(model_dir) or "").endswith(".json")


def predictor_calls(options: PredictorOptions, model_dir: str, shape_file_exists: bool | None = None) -> list[tuple[str, tuple, dict]]:
    """The Config method calls for these options, in order: [(name, args, kwargs), ...]."""
    from trainctl.core.model_files import graph_file

    kind, index = parse_device(options.device)
    calls: list[tuple[str, tuple, dict]] = []
    if (graph_file(model_dir) or "").endswith(".json"):
        calls.append(("enable_new_executor", (True,), {}))
    if kind == "gpu":
        calls += [("enable_use_gpu", (GPU_MEMORY_MB, index), {}), ("switch_ir_optim", (True,), {})]
    elif kind == "xpu":
        calls += [("enable_xpu", (10 * 1024 * 1024,), {}), ("set_xpu_device_id", (index,), {})]
    elif kind == "npu":
        calls += [("enable_custom_device", ("npu", index), {})]
    else:
        calls += [("disable_gpu", (), {}), ("set_cpu_math_library_num_threads", (max(1, options.threads),), {})]
        onednn = onednn_default(model_dir) if options.onednn is None else options.onednn
        calls += [("enable_onednn", (), {})] if onednn else [("disable_onednn", (), {})]
    if options.run_mode in TRT_PRECISION:
        batch = max(1, options.batch_size)
        calls.append(("enable_tensorrt_engine", (), {
            "workspace_size": (1 << 25) * batch, "max_batch_size": batch, "min_subgraph_size": options.min_subgraph_size,
            "precision_mode": TRT_PRECISION[options.run_mode], "use_static": False,
            "use_calib_mode": options.run_mode == "trt_int8" and options.trt_calib}))
        path = shape_file(model_dir)
        exists = os.path.isfile(path) if shape_file_exists is None else shape_file_exists
        if options.collect_trt_shapes:
            calls.append(("collect_shape_range_info", (path,), {}))
        elif exists:
            calls.append(("enable_tuned_tensorrt_dynamic_shape", (path, True), {}))
    calls += [("disable_glog_info", (), {}), ("enable_memory_optim", (), {}), ("switch_use_feed_fetch_ops", (False,), {})]
    return calls


def apply_calls(config, calls: list[tuple[str, tuple, dict]], precision_type=None) -> None:
    """Make the calls on `config`; precision names become `precision_type.<name>` (paddle.inference.PrecisionType).

    paddle < 3 names the oneDNN switches *_mkldnn: the older name is used when the newer is missing.
    """
    for name, args, kwargs in calls:
        method = getattr(config, name, None) or getattr(config, name.replace("onednn", "mkldnn"))
        if "precision_mode" in kwargs and precision_type is not None:
            kwargs = dict(kwargs, precision_mode=getattr(precision_type, kwargs["precision_mode"]))
        method(*args, **kwargs)
