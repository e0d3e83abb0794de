"""`trainctl slurm-script`: print an sbatch script that trains on N Slurm nodes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command("slurm-script", context_settings={"ignore_unknown_options": True, "max_content_width": 100})
@click.option("--nodes", type=int, required=True, help="Number of nodes (one srun task each).")
@click.option("--gpus-per-node", type=int, required=True, help="GPUs per node (0: CPU workers).")
@click.option("-c", "--config", required=True, help="Config file, or the name of a bundled config.")
@click.option("--time", "time_limit", metavar="HH:MM:SS", help="#SBATCH --time.")
@click.option("--partition", help="#SBATCH --partition.")
@click.option("--account", help="#SBATCH --account.")
@click.option("--cpus-per-task", type=int, help="#SBATCH --cpus-per-task (CPUs per node for its workers).")
@click.option("--job-name", help="#SBATCH --job-name (default trainctl-<config name>).")
@click.option("--workdir", help="Directory the job runs in (default: this one).")
@click.option("--python", "python", help="Python with trainctl on the nodes (default: this one).")
@click.option("--master-port", type=int, help="Master port (default 20000 + job id % 20000).")
@click.option("--max-restarts", type=click.IntRange(min=0), metavar="N",
              help="Restarts of each node's trainctl within the allocation (train --max-restarts).")
@click.option("--out", "out_file", metavar="FILE", help="Write the script to FILE instead of printing it.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def slurm_script(nodes, gpus_per_node, config, time_limit, partition, account, cpus_per_task, job_name, workdir,
                 python, master_port, max_restarts, out_file, train_args) -> None:
    """Print an sbatch script that runs `trainctl train` on every node of an allocation.

    Arguments after the options go to `trainctl train` (checked by its parser here). Inside
    the job, each node's trainctl reads its rank, the node count, the master (the
    first node) and its GPUs from Slurm (--launcher slurm). The command resumes with
    --resume auto (unless you pass --resume after --), so a requeued job continues
    from the newest complete checkpoint.

    \b
    Examples:
      trainctl slurm-script --nodes 2 --gpus-per-node 4 -c roadsign.yml --time 02:00:00 > train.sbatch
      sbatch train.sbatch
      trainctl slurm-script --nodes 2 --gpus-per-node 8 -c roadsign.yml --partition gpu -- --net rdma --eval
      trainctl slurm-script --nodes 4 --gpus-per-node 8 -c roadsign.yml --max-restarts 3 -- --save-interval-iters 500
    """
    from trainctl import output
    from trainctl.cli.forward import refuse_flags, train_args_words
    from trainctl.cluster.options import NODE_PARAMS
    from trainctl.config import find_config
    from trainctl.fsutil import atomic_write_text
    from trainctl.cluster.slurm import sbatch_script

    find_config(config)  # a typo fails here, not on the cluster an hour later
    args = [a for a in train_args if a != "--"]
    refuse_flags(args, NODE_PARAMS + ("hostfile", "hosts", "launcher"), "is set by Slurm in the script",
                 "drop {flag} from the train arguments")
    refuse_flags(args, ("config",), "is given twice (slurm-script's own -c and a train argument)",
                 "give the config once: slurm-script -c CONFIG")
    args = train_args_words(config, args)  # a typo fails here (exit 2), not on the cluster
    name = job_name or f"trainctl-{Path(config).stem}"
    text = sbatch_script(
        nodes=nodes, gpus_per_node=gpus_per_node, train_args=["-c", config, *args],
        python=python or sys.executable, job_name=name, workdir=workdir or os.getcwd(), time=time_limit,
        partition=partition, cpus_per_task=cpus_per_task, account=account, master_port=master_port,
        max_restarts=max_restarts,
    )
    if out_file:
        atomic_write_text(out_file, text, mode=0o755)
        output.info(f"wrote {out_file}; submit it with: sbatch {out_file}")
    else:
        output.echo(text.rstrip("\n"))
