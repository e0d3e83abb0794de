"""Slurm: derive the node flags from a job step's environment, and write sbatch scripts.

Inside `srun` (one task per node) Slurm tells each task where it is:

  SLURM_JOB_ID            the job; the default master port is derived from it
  SLURM_STEP_NODELIST     the step's nodes (else SLURM_JOB_NODELIST / SLURM_NODELIST),
                          compressed like `gpu[01-03,07],login5`
  SLURM_STEP_NUM_NODES    how many (else SLURM_NNODES / SLURM_JOB_NUM_NODES)
  SLURM_NODEID            this node's index in the step: the node rank
  SLURM_STEP_NUM_TASKS    tasks in the step (else SLURM_NTASKS): must equal the nodes,
                          since trainctl starts all of a node's workers from one task
  SLURMD_NODENAME         this node's name
  CUDA_VISIBLE_DEVICES    the GPUs Slurm gave this task (paddle's --devices index into it)
  SLURM_STEP_GPUS / SLURM_JOB_GPUS / SLURM_GPUS_ON_NODE   used when CUDA_VISIBLE_DEVICES is unset

The master is the first host of the expanded node list, as `scontrol show hostnames`
prints it. Pure: no process is started and no name is resolved here.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Mapping

from trainctl.errors import UserError
from trainctl.cluster.options import in_slurm_step  # noqa: F401 (re-exported; cheap for the CLI)

MASTER_PORT_BASE = 20000
MASTER_PORT_SPAN = 20000


def expand_nodelist(text: str) -> list[str]:
    """Expand a Slurm host list: `gpu[01-03,07],n5` -> gpu01 gpu02 gpu03 gpu07 n5.

    As Slurm's hostlist: commas outside brackets separate hosts; inside brackets they
    separate numbers and ranges; a range keeps the zero padding of its lower bound
    (`[08-10]` -> 08 09 10); several bracket groups in one name expand as a product,
    the leftmost varying slowest (`r[1-2]n[1-2]` -> r1n1 r1n2 r2n1 r2n2).
    """
    hosts: list[str] = []
    for item in _split_top_level(text.strip(), text):
        hosts.extend(_expand_item(item, text))
    return hosts


def _split_top_level(text: str, whole: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise _bad_nodelist(whole, "nested `[`")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise _bad_nodelist(whole, "`]` without `[`")
        elif depth == 0 and (ch == "," or ch.isspace()):
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise _bad_nodelist(whole, "unclosed `[`")
    items.append(text[start:])
    items = [i for i in items if i]
    if not items:
        raise _bad_nodelist(whole, "no hosts")
    return items


def _expand_item(item: str, whole: str) -> list[str]:
    open_at = item.find("[")
    if open_at < 0:
        return [item]
    close_at = item.index("]", open_at)
    prefix, body, rest = item[:open_at], item[open_at + 1 : close_at], item[close_at + 1 :]
    numbers = _expand_ranges(body, whole)
    tails = _expand_item(rest, whole) if rest else [""]
    return [f"{prefix}{n}{tail}" for n in numbers for tail in tails]


def _expand_ranges(body: str, whole: str) -> list[str]:
    out: list[str] = []
    for part in body.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise _bad_nodelist(whole, f"`[{body}]` is not a list of numbers and ranges")
        if not sep:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise _bad_nodelist(whole, f"range {part} runs backwards")
        width = len(lo)
        out.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
    return out


def _bad_nodelist(whole: str, why: str) -> UserError:
    return UserError(
        f"cannot read the Slurm node list {whole!r}: {why}",
        hint="expected names like node[01-04,07],login1 (as `scontrol show hostnames` takes)",
    )


@dataclass(frozen=True)
class SlurmPlacement:
    """Where this task runs, derived from Slurm's environment."""

    job_id: str
    hosts: tuple[str, ...]  # the step's nodes, expanded
    nnodes: int
    node_rank: int
    node_name: str  # this node (SLURMD_NODENAME, else hosts[node_rank])
    master_host: str  # hosts[0]
    master_port: int
    gpus: tuple[int, ...] | None  # device indices for paddle launch (None: Slurm gave none)
    gpus_from: str  # which variable the GPUs came from (for the launch record)

    @property
    def master(self) -> str:
        return f"{self.master_host}:{self.master_port}"


def default_master_port(job_id: str) -> int:
    """A port every node of the job computes alike, spread over jobs: 20000 + job id % 20000."""
    digits = re.sub(r"\D", "", job_id) or "0"
    return MASTER_PORT_BASE + int(digits) % MASTER_PORT_SPAN


def placement_from_env(env: Mapping[str, str], master_port: int | None = None) -> SlurmPlacement:
    """Read this task's placement; UserError naming the variable when something is off."""
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        raise UserError(
            "--launcher slurm needs a Slurm job, but SLURM_JOB_ID is not set",
            hint="run it under srun inside an allocation (see `trainctl slurm-script`)",
        )
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise UserError("Slurm did not set SLURM_JOB_NODELIST", hint="run trainctl under srun inside the allocation")
    hosts = tuple(expand_nodelist(nodelist))
    nnodes_text = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES")
    nnodes = _int_var(env, nnodes_text, "SLURM_NNODES") if nnodes_text else len(hosts)
    if nnodes != len(hosts):
        raise UserError(
            f"Slurm says {nnodes} nodes but the node list {nodelist!r} has {len(hosts)}",
            hint="run trainctl under srun so the step's variables are consistent",
        )
    node_rank = _int_var(env, env.get("SLURM_NODEID", "0"), "SLURM_NODEID")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"SLURM_NODEID={node_rank} is outside 0..{nnodes - 1}", hint="run trainctl under srun")
    ntasks_text = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if ntasks_text and nnodes > 1:
        ntasks = _int_var(env, ntasks_text, "SLURM_NTASKS")
        if ntasks != nnodes:
            raise UserError(
                f"the Slurm step runs {ntasks} tasks on {nnodes} nodes; trainctl needs one task per node "
                "(it starts all of a node's workers itself)",
                hint="use `srun --ntasks-per-node=1 ...` (trainctl slurm-script writes this)",
            )
    if nnodes > 1 and not in_slurm_step(env):
        raise UserError(
            f"this allocation has {nnodes} nodes but trainctl runs outside srun, so only one node would start",
            hint="start it with `srun --ntasks-per-node=1 trainctl train ...`",
        )
    gpus, gpus_from = gpus_from_env(env)
    port = master_port if master_port is not None else default_master_port(job_id)
    return SlurmPlacement(
        job_id=job_id,
        hosts=hosts,
        nnodes=nnodes,
        node_rank=node_rank,
        node_name=env.get("SLURMD_NODENAME") or hosts[node_rank],
        master_host=hosts[0],
        master_port=port,
        gpus=gpus,
        gpus_from=gpus_from,
    )


def gpus_from_env(env: Mapping[str, str]) -> tuple[tuple[int, ...] | None, str]:
    """The device indices for this node's workers, and the variable they came from.

    paddle's --devices index into CUDA_VISIBLE_DEVICES, so when Slurm set it (its usual
    way with `--gres=gpu:N`) the devices are 0..n-1 whatever the physical ids are.
    """
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        items = [x for x in cvd.split(",") if x.strip()]
        if not items or items == ["-1"] or cvd.strip() in ("NoDevFiles",):
            return None, "CUDA_VISIBLE_DEVICES"
        return tuple(range(len(items))), "CUDA_VISIBLE_DEVICES"
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = env.get(var)
        if value:
            ids = [x.strip() for x in value.split(",") if x.strip()]
            if ids and all(x.isdigit() for x in ids):
                return tuple(int(x) for x in ids), var
    count = env.get("SLURM_GPUS_ON_NODE")
    if count and count.isdigit() and int(count) > 0:
        return tuple(range(int(count))), "SLURM_GPUS_ON_NODE"
    return None, ""


def _int_var(env: Mapping[str, str], text: str, name: str) -> int:
    text = (text or "").strip()
    # SLURM_NNODES may be a range like "2-4" only in the submit environment; inside a step it is a number
    if not text.isdigit():
        raise UserError(f"{name}={text!r} is not a number", hint="run trainctl under srun inside the allocation")
    return int(text)


def sbatch_script(
    *,
    nodes: int,
    gpus_per_node: int,
    train_args: list[str],
    python: str,
    job_name: str,
    workdir: str | None = None,
    time: str | None = None,
    partition: str | None = None,
    cpus_per_task: int | None = None,
    account: str | None = None,
    master_port: int | None = None,
    output: str = "slurm-%x-%j.out",
    max_restarts: int | None = None,
) -> str:
    """An sbatch script that runs `trainctl train` once per node under srun.

    The command resumes with `--resume auto` (unless train_args name a checkpoint), so a
    requeued or resubmitted job continues from the newest complete checkpoint, as the pods
    of a k8s-manifest PaddleJob do; `max_restarts` adds `--max-restarts N`, the restarts
    each node's trainctl makes within the allocation.
    """
    if nodes < 1:
        raise UserError(f"--nodes must be at least 1, not {nodes}", hint="e.g. --nodes 2")
    if gpus_per_node < 0:
        raise UserError(f"--gpus-per-node must be 0 or more, not {gpus_per_node}", hint="0 runs on CPUs")
    if max_restarts is not None and max_restarts < 0:
        raise UserError(f"--max-restarts must be 0 or more, not {max_restarts}", hint="e.g. --max-restarts 3")
    if max_restarts is not None and _has_flag(train_args, "--max-restarts"):
        raise UserError("--max-restarts is given twice (as an option and after --)", hint="give it once")
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if gpus_per_node:
        lines.append(f"#SBATCH --gres=gpu:{gpus_per_node}")
    if cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={cpus_per_task}")
    if time:
        lines.append(f"#SBATCH --time={time}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines.append(f"#SBATCH --output={output}")
    lines += [
        "",
        "# One task per node: trainctl starts that node's workers itself (paddle launch),",
        "# and reads its node rank, the node count and the master from Slurm's variables.",
        "set -euo pipefail",
    ]
    if workdir:
        lines.append(f"cd {q(workdir)}")
    launch = [python, "-m", "trainctl", "train", "--launcher", "slurm"]
    if master_port is not None:
        launch += ["--master-port", str(master_port)]
    if gpus_per_node == 0 and not _has_device_flag(train_args):
        launch += ["--device", "cpu"]
    if not (_has_flag(train_args, "--resume") or _has_flag(train_args, "-r")):
        launch += ["--resume", "auto"]  # a requeued job continues from the newest complete checkpoint
    if max_restarts:
        launch += ["--max-restarts", str(max_restarts)]
    launch += list(train_args)
    srun = ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    lines.append(" ".join(q(a) for a in srun + launch))
    return "\n".join(lines) + "\n"


def _has_flag(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _has_device_flag(args: list[str]) -> bool:
    return any(a in ("--device", "--gpus", "--devices") or a.startswith(("--device=", "--gpus=", "--devices=")) for a in args)
