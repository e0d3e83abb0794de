"""Environment hygiene for launches: stale distributed variables and secrets.

Stale variables: paddle.distributed.launch (2.6, 3.3) reads these from its
own environment and lets them override the flags trainctl passes, with only a
log warning (context/args_envs.py `env_args_mapping`, `collective_compatible`,
and the rank taken from PADDLE_TRAINER_ID). They are left behind by an outer
launcher, a previous job in the same shell, or a Slurm/K8s wrapper; a worker
started from inside another job inherits them too. trainctl removes them from
the launcher's environment and lists what it removed.
"""

from __future__ import annotations

# read by paddle.distributed.launch as overrides of its flags
LAUNCH_OVERRIDES = (
    "PADDLE_MASTER", "PADDLE_DEVICES", "PADDLE_NNODES", "PADDLE_RUN_MODE", "PADDLE_LOG_LEVEL",
    "PADDLE_LOG_OVERWRITE", "PADDLE_SORT_IP", "PADDLE_NPROC_PER_NODE", "PADDLE_JOB_ID", "PADDLE_RANK",
    "PADDLE_LOG_DIR", "PADDLE_MAX_RESTART", "PADDLE_ELASTIC_LEVEL", "PADDLE_ELASTIC_TIMEOUT",
    "PADDLE_SERVER_NUM", "PADDLE_TRAINER_NUM", "PADDLE_SERVERS_ENDPOINTS", "PADDLE_TRAINERS_ENDPOINTS",
    "PADDLE_GLOO_PORT", "PADDLE_WITH_GLOO", "PADDLE_START_PORT", "PADDLE_IPS", "PADDLE_AUTO_PARALLEL_CONFIG",
    "PADDLE_AUTO_CLUSTER", "POD_IP",
    "PADDLE_TRAINER_ID",  # sets --rank
    "PADDLE_TRAINER_ENDPOINTS", "DISTRIBUTED_TRAINER_ENDPOINTS",  # reset --master and --nnodes
)
# what the launcher gives each worker; stale copies confuse a nested launch or the worker itself
WORKER_SET = (
    "PADDLE_GLOBAL_SIZE", "PADDLE_LOCAL_SIZE", "PADDLE_GLOBAL_RANK", "PADDLE_LOCAL_RANK",
    "PADDLE_CURRENT_ENDPOINT", "PADDLE_TRAINERS_NUM", "PADDLE_RANK_IN_NODE", "PADDLE_DISTRI_BACKEND",
    "PADDLE_WORLD_DEVICE_IDS", "PADDLE_LOCAL_DEVICE_IDS", "PADDLE_AUTO_PARALLEL_STAGE",
    "POD_NAME", "TRAINING_ROLE", "COLLECTIVE_MASTER_IP", "FLAGS_selected_gpus", "FLAGS_selected_cpus",
    "FLAGS_selected_xpus",
)
STALE_VARIABLES = LAUNCH_OVERRIDES + WORKER_SET
# what the Kubeflow training operator sets in each pod of a PaddleJob (stale everywhere else):
# `--launcher kubeflow` (trainctl.cluster.kubeflow) keeps them and places the node with them
PADDLEJOB_VARIABLES = ("PADDLE_JOB_ID", "PADDLE_MASTER", "PADDLE_NNODES")

SECRET_WORDS = ("TOKEN", "KEY", "PASSWORD", "PASSWD", "SECRET", "CREDENTIAL")
MASK = "***"


def stale_variables(environ: dict[str, str]) -> list[str]:
    """Names in `environ` that would override or confuse a fresh launch, sorted."""
    return sorted(name for name in environ if name in STALE_VARIABLES)


def clean_environ(environ: dict[str, str], remove: list[str] | None = None) -> dict[str, str]:
    names = set(stale_variables(environ) if remove is None else remove)
    return {k: v for k, v in environ.items() if k not in names}


def is_secret(name: str) -> bool:
    """Substring match: masking a harmless value costs less than printing a token."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def mask_secrets(env: dict[str, str]) -> dict[str, str]:
    """A copy with the values of secret-looking names replaced by ***."""
    return {k: (MASK if is_secret(k) and v else v) for k, v in env.items()}
