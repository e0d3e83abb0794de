"""The trainctl command line.

Each command lives in its own module and is imported only when it is run,
so `trainctl --help` stays fast and never imports paddle.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from trainctl import __version__, output
from trainctl.errors import TrainctlError

# command name -> (module, attribute, one-line help shown by `trainctl --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("trainctl.cli.train", "train", "Train a model on one CPU, several GPUs or many hosts."),
    "eval": ("trainctl.cli.eval", "eval_cmd", "Evaluate weights on a config's eval dataset."),
    "export": ("trainctl.cli.export", "export", "Export weights to a Paddle Inference model."),
    "infer": ("trainctl.cli.infer", "infer", "Detect objects in images (dynamic graph or exported model)."),
    "data": ("trainctl.cli.data", "data", "Make sample data and check datasets."),
    "config": ("trainctl.cli.config", "config", "Show, trace and validate layered configs."),
    "doctor": ("trainctl.cli.doctor", "doctor", "Diagnose the environment: paddle, GPUs, NCCL, network."),
    "sweep": ("trainctl.cli.sweep", "sweep", "Train every combination of a few config values, as ordinary runs."),
    "runs": ("trainctl.cli.runs", "runs", "List training runs and their status."),
    "board": ("trainctl.cli.board", "board", "Open VisualDL on one or several runs."),
    "smoke": ("trainctl.cli.smoke", "smoke", "Check train, eval, export, infer and collectives on your placement."),
    "slurm-script": ("trainctl.cli.slurm", "slurm_script", "Print an sbatch script for a Slurm cluster."),
    "k8s-manifest": ("trainctl.cli.k8s", "k8s_manifest", "Print a Kubeflow PaddleJob for a Kubernetes cluster."),
}


def _print_traceback() -> None:
    import traceback  # only with --debug

    traceback.print_exc()


def _debug_enabled() -> bool:
    return os.environ.get("TRAINCTL_DEBUG", "") not in ("", "0")


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name][0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trainctl")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print only results and errors.")
def cli(debug: bool, quiet: bool) -> None:
    """Train PaddleDetection models, from one CPU to many GPU hosts.

    \b
    Quick start (CPU, built-in sample data):
      trainctl data sample --out dataset/roadsign_voc
      trainctl train -c roadsign_cpu_smoke.yml
      trainctl eval -c roadsign_cpu_smoke.yml --weights output/roadsign_cpu_smoke/model_final
    """
    if debug:
        os.environ["TRAINCTL_DEBUG"] = "1"
    output.set_quiet(quiet)


def _usage_line(exc: click.ClickException) -> str:
    """click's message as one line, with where to read the usage (click prints four lines)."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError):
        command = ctx.command_path if ctx is not None else "trainctl"
        return f"{message}; see `{command} --help`"
    return message


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and turns errors into one line and an exit code."""
    # nothing trainctl or its workers write (records, checkpoints, logs, exports) is
    # world-writable, whatever the user's umask; group bits are left as the user set them
    os.umask(os.umask(0) | 0o002)
    try:
        # with standalone_mode=False, click returns the code given to ctx.exit(n)
        result = cli.main(args=argv, prog_name="trainctl", standalone_mode=False)
    except click.exceptions.Abort:
        output.error("interrupted")
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # usage errors (unknown flag or command, bad choice, missing option): one line, exit 2
        if _debug_enabled():
            _print_traceback()
        output.error(_usage_line(exc))
        sys.exit(exc.exit_code)
    except TrainctlError as exc:
        if _debug_enabled():
            _print_traceback()
        output.error(exc.one_line())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug in trainctl: still one line unless --debug
        if _debug_enabled():
            _print_traceback()
        from trainctl.errors import exception_line

        output.error(f"internal error: {exception_line(exc)} (rerun with --debug for the traceback)")
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
