"""The collective probe, inside each worker: all-reduce timings per message size.

Started by `trainctl smoke --comm` through the same launch plan as training
(job task "comm"), so it runs on every rank of the placement with the same
launcher, devices and network environment. Measured as nccl-tests'
all_reduce_perf does (doc/PERFORMANCE.md there):

- float32 sum all-reduce of S bytes; warm-up operations first, then `rounds`
  rounds of `iters` timed operations, each round after a barrier; a rank's
  time of one operation is the median round's elapsed time over `iters` (GPU
  work synchronized), and the reported time is that averaged over ranks
  (nccl-tests averages one round over ranks; the median of several rounds keeps
  one preempted round on a shared machine from deciding the figure);
- algbw = S / t and busbw = algbw * 2(n-1)/n (n ranks), in GB/s (1e9 bytes/s);
- each size is checked once: rank r contributes r+1, every element must come
  back as n(n+1)/2.

The number of timed operations adapts to the size so that large messages on
slow links stay short: one timed operation estimates the time (the slowest
rank's, agreed on by an all-reduce MAX so every rank runs the same count),
then iters = clamp(target_seconds / rounds / estimate, 1, max_iters).

Rank 0 writes the results to `<run_dir>/comm.json` (trainctl.smoke.comm reads
it and prints the table; this module prints only its log lines).
"""

from __future__ import annotations

import json
import math
import os
import time

from trainctl import output
from trainctl.fsutil import atomic_write_text

RESULT_FILE = "comm.json"
LARGE = 4 << 20  # above this, one warm-up operation per size (each costs real time on slow links)
DEFAULTS = {"warmup": 5, "rounds": 5, "max_iters": 20, "target_seconds": 0.25}
# what the worker's environment says about the transport (set by the preset, --env or the launcher)
TRANSPORT_ENV = ("PADDLE_DISTRI_BACKEND", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_IB_HCA",
                 "NCCL_NET_GDR_LEVEL", "NCCL_P2P_DISABLE", "NCCL_NET")


def _log(message: str) -> None:
    output.echo(f"[trainctl comm] {message}", err=True)


def _setup_device(device: str) -> str:
    import paddle

    if device == "gpu" and paddle.device.is_compiled_with_cuda():
        gpus = os.environ.get("FLAGS_selected_gpus", "0").split(",")[0] or "0"
        place = f"gpu:{gpus}"
    else:
        place = "cpu"
    paddle.set_device(place)
    return place


def run(job, rank: int, world_size: int) -> dict:
    import paddle
    import paddle.distributed as dist

    opts = dict(DEFAULTS, **(job.extra or {}))
    sizes = [int(s) for s in opts.get("sizes") or ()]
    place = _setup_device(job.device)
    dist.init_parallel_env()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    gpu = place.startswith("gpu")
    _log(f"rank {rank} of {world_size} on {place}, paddle {paddle.__version__}, sizes {sizes}")

    def sync() -> None:
        if gpu:
            paddle.device.synchronize()

    def agreed(value: float, op) -> float:
        t = paddle.to_tensor([value], dtype="float64")
        dist.all_reduce(t, op=op)
        return float(t.numpy()[0])

    expected = world_size * (world_size + 1) / 2
    first = paddle.zeros([1], dtype="float32")
    for _ in range(int(opts["warmup"])):  # connections and buffers of the collective, before any timing
        dist.all_reduce(first)
    sync()
    results = []
    for size in sizes:
        count = max(1, size // 4)
        check = paddle.full([count], float(rank + 1), dtype="float32")
        dist.all_reduce(check)
        sync()
        correct = bool(abs(float(check.min()) - expected) < 1e-3 and abs(float(check.max()) - expected) < 1e-3)
        del check
        buf = paddle.zeros([count], dtype="float32")  # zeros stay zeros: no overflow over many operations
        for _ in range(int(opts["warmup"]) if size <= LARGE else 1):
            dist.all_reduce(buf)
        sync()
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(buf)
        sync()
        estimate = agreed(time.perf_counter() - start, dist.ReduceOp.MAX)
        rounds = int(opts["rounds"])
        iters = max(1, min(int(opts["max_iters"]), math.ceil(float(opts["target_seconds"]) / rounds / max(estimate, 1e-9))))
        per_round = []
        for _ in range(rounds):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(buf)
            sync()
            per_round.append((time.perf_counter() - start) / iters)
        mine = sorted(per_round)[len(per_round) // 2]
        seconds = agreed(mine, dist.ReduceOp.SUM) / world_size  # averaged over ranks, as nccl-tests does
        del buf
        nbytes = count * 4
        algbw = nbytes / seconds / 1e9
        results.append({
            "bytes": nbytes, "count": count, "dtype": "float32", "iters": iters, "rounds": rounds, "time_us": seconds * 1e6,
            "algbw_gbps": algbw, "busbw_gbps": algbw * 2 * (world_size - 1) / world_size, "correct": correct,
        })
        _log(f"{nbytes} bytes: {seconds * 1e6:.1f} us, busbw {results[-1]['busbw_gbps']:.3f} GB/s"
             + ("" if correct else " (WRONG RESULT)"))
    backend = None
    try:
        backend = str(dist.get_backend())
    except Exception:  # older paddle: no get_backend
        pass
    summary = {
        "task": "comm",
        "world_size": world_size,
        "device": place if not gpu else "gpu",
        "backend": backend,
        "env": {k: os.environ[k] for k in TRANSPORT_ENV if k in os.environ},
        "paddle": paddle.__version__,
        "results": results,
    }
    if rank == 0:
        atomic_write_text(os.path.join(job.run_dir, RESULT_FILE), json.dumps(summary, indent=2) + "\n")
    peak = max((r["busbw_gbps"] for r in results), default=0.0)
    summary["line"] = f"comm done: {len(results)} sizes over {world_size} ranks, peak busbw {peak:.3f} GB/s"
    return summary
