"""`trainctl k8s-manifest`: print (or apply) a Kubeflow PaddleJob that trains on N pods."""

from __future__ import annotations

import click

from trainctl.cli.options import network_options


@click.command("k8s-manifest", context_settings={"max_content_width": 100})
@click.option("-c", "--config", required=True, help="Config file (as the pods see it), or a bundled config's name.")
@click.option("--nodes", type=int, required=True, help="Number of pods (Worker replicas), one per node.")
@click.option("--gpus-per-node", type=int, required=True, help="GPUs per pod (nvidia.com/gpu limit; 0: CPU).")
@click.option("--image", required=True, help="Container image with trainctl and paddle installed.")
@click.option("--name", help="PaddleJob name (default trainctl-<config name>); pods are <name>-worker-<i>.")
@click.option("--namespace", help="Namespace of the PaddleJob (default: kubectl's).")
@click.option("--data-pvc", metavar="CLAIM:MOUNT", help="Mount this PersistentVolumeClaim (the dataset) at MOUNT.")
@click.option("--output-pvc", metavar="CLAIM:MOUNT",
              help="Mount this ReadWriteMany claim at MOUNT; the run directory is MOUNT/<name>.")
@network_options(help={
    "net": "Network preset the pods use: auto, nccl, tcp, rdma, gpudirect, gloo, or a preset file.",
    "ifname": "Interface in the pods for sockets/bootstrap (default: their route's).",
    "hca": "RDMA ports for NCCL_IB_HCA, e.g. mlx5_0:1.",
    "nccl_debug": "NCCL_DEBUG=INFO in the pods (their logs show the transport).",
})
@click.option("--rdma-resource", metavar="NAME[=N]",
              help="Extended resource of your RDMA device plugin, e.g. rdma/hca_shared_devices_a (limit N, default 1).")
@click.option("--host-network", is_flag=True, help="Run the pods in the nodes' network namespace (hostNetwork).")
@click.option("--privileged", is_flag=True, help="Privileged containers (RDMA devices without a device plugin).")
@click.option("--port", type=int, default=37777, show_default=True, help="The `master` port of worker 0.")
@click.option("--workdir", default="/workspace", show_default=True,
              help="Working directory in the pods (relative paths of the config start here).")
@click.option("--env", "env", multiple=True, metavar="KEY=VAL", help="Worker environment variable (repeatable).")
@click.option("--node-selector", "node_selector", multiple=True, metavar="KEY=VALUE",
              help="Schedule the pods only on nodes with this label (nodeSelector; repeatable).")
@click.option("--toleration", "tolerations", multiple=True, metavar="KEY[=VALUE]:EFFECT",
              help="Tolerate this taint (EFFECT: NoSchedule, PreferNoSchedule or NoExecute; repeatable).")
@click.option("--image-pull-secret", "image_pull_secrets", multiple=True, metavar="NAME",
              help="Secret with the credentials of a private registry (imagePullSecrets; repeatable).")
@click.option("--cpu", metavar="QUANTITY", help="CPUs per pod, request and limit (e.g. 8, 7500m).")
@click.option("--memory", metavar="QUANTITY", help="Memory per pod, request and limit (e.g. 64Gi); /dev/shm counts.")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Config override for the pods' trainctl train (repeatable).")
@click.option("--apply", "apply_", is_flag=True, help="Pipe the manifest to `kubectl apply -f -` instead of printing it.")
@click.option("--out", "out_file", metavar="FILE", help="Write the manifest to FILE instead of printing it.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def k8s_manifest(config, nodes, gpus_per_node, image, name, namespace, data_pvc, output_pvc, rdma_resource,
                 host_network, privileged, port, workdir, env, node_selector, tolerations, image_pull_secrets, cpu,
                 memory, overrides, apply_, out_file, train_args, **network) -> None:
    """Print a Kubeflow PaddleJob whose pods run `trainctl train` together.

    Each pod runs `trainctl train -c CONFIG --launcher kubeflow --resume auto` with the
    GPUs, network preset and overrides given here, so a pod that Kubernetes restarts
    (restartPolicy OnFailure) continues from the newest complete checkpoint in the
    output volume. Arguments after `--` go to `trainctl train` (checked by its parser here).

    \b
    Examples:
      trainctl k8s-manifest -c roadsign.yml --nodes 2 --gpus-per-node 4 --image registry.example.com/trainctl:0.1 \\
          --data-pvc roadsign-data:/workspace/dataset --output-pvc train-output:/output > job.yaml
      kubectl apply -f job.yaml
      trainctl k8s-manifest -c roadsign.yml --nodes 4 --gpus-per-node 8 --image IMAGE --net rdma \\
          --rdma-resource rdma/hca_shared_devices_a --output-pvc out:/output --apply -- --eval --keep 3
      trainctl k8s-manifest -c roadsign.yml --nodes 2 --gpus-per-node 8 --image IMAGE --output-pvc out:/output \\
          --node-selector nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB --toleration nvidia.com/gpu:NoSchedule \\
          --image-pull-secret registry-credentials --cpu 32 --memory 256Gi
    """
    from trainctl import __version__, output
    from trainctl.cli.forward import train_words
    from trainctl.cluster import k8s_manifest as k8s
    from trainctl.launch.options import NETWORK_FIELDS

    spec = k8s.ManifestSpec(
        config=config, nodes=nodes, gpus_per_node=gpus_per_node, image=image,
        name=name if name is not None else _default_name(config), namespace=namespace,
        data=k8s.parse_mount(data_pvc, "--data-pvc") if data_pvc else None,
        output=k8s.parse_mount(output_pvc, "--output-pvc") if output_pvc else None,
        **{field: network[field] for field in NETWORK_FIELDS},
        host_network=host_network, rdma_resource=rdma_resource, privileged=privileged, port=port,
        workdir=workdir, overrides=list(overrides), env=tuple(env), train_args=_train_args(config, train_args),
        node_selector=tuple(node_selector), tolerations=tuple(tolerations),
        image_pull_secrets=tuple(image_pull_secrets), cpu=cpu, memory=memory,
    )
    manifest = k8s.build(spec, train_words)
    _check_config(spec)
    text = k8s.to_yaml(manifest, spec, __version__)
    for note in manifest.notes:
        output.info(f"note: {note}")
    if out_file:
        from trainctl.fsutil import atomic_write_text

        atomic_write_text(out_file, text)
        output.info(f"wrote {out_file}; start it with: kubectl apply -f {out_file}")
    if apply_:
        result = k8s.kubectl_apply(text)
        output.echo(result)
        where = f" -n {spec.namespace}" if spec.namespace else ""
        output.info(f"follow it: kubectl logs -f {spec.name}-worker-0{where}")
    elif not out_file:
        output.echo(text.rstrip("\n"))


def _default_name(config: str) -> str:
    from pathlib import PurePath

    from trainctl.cluster.k8s_manifest import suggest_name

    return suggest_name("trainctl-" + PurePath(config).stem)


# `trainctl train` options the manifest sets itself (or that make no sense in a pod)
SET_BY_MANIFEST = ("nnodes", "node_rank", "master", "host", "ips", "hostfile", "hosts", "launcher", "resume", "output",
                   "gpus", "device", "nproc", "config", "dry_run", "sample_data")


def _train_args(config: str, train_args: tuple[str, ...]) -> list[str]:
    """The arguments after `--`: `trainctl train` flags the manifest does not set itself, parsed by
    train's parser (a typo fails here, exit 2, not in the pods) and written again as words."""
    from trainctl.cli.forward import refuse_flags, train_args_words

    args = [a for a in train_args if a != "--"]
    refuse_flags(args, SET_BY_MANIFEST, "is set by the manifest", "drop {flag} from the arguments after --")
    return train_args_words(config, args) if args else []


def _check_config(spec) -> None:
    """A bundled config or one on this machine: resolve it with the overrides (catches typos in -o keys).

    A config only the pods have (an absolute path in the image or on a volume) is left to them.
    """
    from trainctl import output
    from trainctl.config import find_config, resolve
    from trainctl.config.locate import BUNDLED_DIR
    from trainctl.errors import UserError

    try:
        path = find_config(spec.config)
    except UserError:
        if spec.config.startswith("/"):
            output.info(f"note: {spec.config} is not on this machine; the pods must have it (image or volume), "
                        "and its -o keys are checked only there")
            return
        raise
    if BUNDLED_DIR not in path.resolve().parents:
        output.info(f"note: the pods read {spec.config} " + ("" if spec.config.startswith("/") else
                    f"from {spec.workdir} ") + "in their image or volumes, not from this machine")
    resolve(spec.config, overrides=list(spec.overrides))
