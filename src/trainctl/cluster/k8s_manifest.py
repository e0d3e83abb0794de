"""`trainctl k8s-manifest`: a Kubeflow PaddleJob whose pods run `trainctl train` (pure).

The job (apiVersion kubeflow.org/v1, kind PaddleJob; training-operator release-1.9) has
only Worker replicas (collective mode), restartPolicy OnFailure, the container `paddle`
with the port named `master` (37777 unless --port), and each pod runs

    trainctl train --config CONFIG --launcher kubeflow --resume auto [--gpus 0..G-1 | --device cpu]
        [--net PRESET ...] [--output MOUNT/<job>] [--env KEY=VAL ...] [--override KEY=VALUE ...] [ARGS]

so a pod that OnFailure restarts continues from the newest complete checkpoint in the
output volume. GPUs are `nvidia.com/gpu` limits; /dev/shm is a memory-backed emptyDir
(the default 64 MiB one starves data loaders); the pod's name and IP come from the
downward API (TRAINCTL_POD_NAME, TRAINCTL_POD_IP: with hostNetwork the hostname is the
node's). A named network preset's host-independent variables go into the container's
environment (from trainctl.launch.netpresets on no host facts: this machine's /sys says
nothing about the cluster's nodes); the host-dependent ones (interface, HCA ports) and
everything of `--net auto` are chosen by trainctl inside each pod from that pod's /sys,
since the pods run with the same --net. For RDMA the pods get IPC_LOCK (verbs pin
memory) and the device plugin's resource (--rdma-resource) and/or the host's network.
Scheduling goes into the pod template as given, checked as the API server would check it:
--node-selector (nodeSelector), --toleration (tolerations), --image-pull-secret
(imagePullSecrets), --cpu and --memory (the container's requests and limits, alike). The
pods' `trainctl train` words are written by cli.forward.train_words from the option values
(`pod_train_options`), the one function that writes train's command line.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from trainctl.errors import UserError
from trainctl.launch import netpresets
from trainctl.launch.options import NETWORK_FIELDS, NetworkOptions

API_VERSION = "kubeflow.org/v1"
KIND = "PaddleJob"
CONTAINER = "paddle"  # the operator finds its container by this name
PORT_NAME = "master"  # ... and the master port by this name
DEFAULT_PORT = 37777  # the operator's examples; without a `master` port it would use 36543
DEFAULT_WORKDIR = "/workspace"
GPU_RESOURCE = "nvidia.com/gpu"
RDMA_PRESETS = ("rdma", "gpudirect")

DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# an extended resource name: <DNS-1123 subdomain>/<name>, as device plugins advertise them
RESOURCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
                           r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# a label key's name part and a label value (Kubernetes' qualified name rule, at most 63 characters)
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# a Kubernetes quantity without a sign (the CRD's pattern for resources, which also allows + and -)
QUANTITY = re.compile(r"(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)"
                      r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))?")
QUANTITY_SUFFIXES = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
                     "E": 1e18, **{s + "i": 1024 ** (i + 1) for i, s in enumerate("KMGTPE")}}


@dataclass(frozen=True)
class Mount:
    claim: str
    path: str


@dataclass(kw_only=True)
class ManifestSpec(NetworkOptions):
    """What `trainctl k8s-manifest` builds: the pods, and the network options their trainctl uses."""

    config: str
    nodes: int
    gpus_per_node: int
    image: str
    name: str
    namespace: str | None = None
    data: Mount | None = None
    output: Mount | None = None
    host_network: bool = False
    rdma_resource: str | None = None  # NAME or NAME=COUNT
    privileged: bool = False
    port: int = DEFAULT_PORT
    workdir: str = DEFAULT_WORKDIR
    overrides: list[str] = field(default_factory=list)
    env: tuple[str, ...] = ()  # --env KEY=VAL for the workers (passed to trainctl train)
    node_selector: tuple[str, ...] = ()  # --node-selector KEY=VALUE
    tolerations: tuple[str, ...] = ()  # --toleration KEY[=VALUE]:EFFECT
    image_pull_secrets: tuple[str, ...] = ()  # --image-pull-secret NAME
    cpu: str | None = None  # --cpu QUANTITY: the container's CPU request and limit
    memory: str | None = None  # --memory QUANTITY: its memory request and limit
    train_args: list[str] = field(default_factory=list)  # more `trainctl train` words (cli.forward.train_args_words)


# ---------------------------------------------------------------- checks


def check_name(name: str) -> str:
    """The job name: a DNS-1035 label (the operator's webhook), short enough for `<name>-worker-<i>`."""
    if not DNS1035_LABEL.fullmatch(name) or len(name) > 63:
        raise UserError(f"--name {name!r} is not a valid PaddleJob name",
                        hint=f"use lowercase letters, digits and '-', starting with a letter, at most 63 "
                             f"characters (DNS-1035), e.g. {suggest_name(name)}")
    return name


def check_pod_names(name: str, nodes: int) -> None:
    longest = f"{name}-worker-{nodes - 1}"
    if len(longest) > 63:
        raise UserError(f"--name {name!r} is too long: pod and service {longest!r} has {len(longest)} characters",
                        hint="pod names are DNS labels of at most 63 characters; shorten --name")


def suggest_name(text: str) -> str:
    """A valid job name made from any text (a config's stem)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "job-" + name if name else "job"
    return name[:50].rstrip("-")


def _dns_name(value: str, pattern: re.Pattern, limit: int, problem: str, hint: str) -> str:
    """`value` if it matches the DNS name rule `pattern` within `limit` characters, else UserError(problem)."""
    if not pattern.fullmatch(value) or len(value) > limit:
        raise UserError(problem, hint=hint)
    return value


def check_namespace(namespace: str) -> str:
    return _dns_name(namespace, DNS1123_LABEL, 63, f"--namespace {namespace!r} is not a valid namespace name",
                     "lowercase letters, digits and '-', starting and ending with a letter or digit, "
                     "at most 63 characters (DNS-1123 label)")


def parse_mount(text: str, flag: str) -> Mount:
    """CLAIM:MOUNT: a PersistentVolumeClaim name and an absolute mount path in the pods."""
    claim, sep, path = text.partition(":")
    if not sep or not claim or not path:
        raise UserError(f"{flag} {text!r} is not CLAIM:MOUNT", hint=f"e.g. {flag} coco-data:/data")
    if not DNS1123_SUBDOMAIN.fullmatch(claim) or len(claim) > 253:
        raise UserError(f"{flag} {text!r}: {claim!r} is not a valid PersistentVolumeClaim name",
                        hint="lowercase letters, digits, '-' and '.', starting and ending with a letter or "
                             "digit (DNS-1123 subdomain)")
    path = posixpath.normpath(path)
    if not path.startswith("/") or path == "/" or ":" in path:
        raise UserError(f"{flag} {text!r}: the mount path must be an absolute directory other than /",
                        hint=f"e.g. {flag} {claim}:/data")
    return Mount(claim, path)


def parse_resource(text: str) -> tuple[str, int]:
    name, sep, count = text.partition("=")
    if not RESOURCE_NAME.fullmatch(name) or len(name) > 253:
        raise UserError(f"--rdma-resource {text!r} is not an extended resource name",
                        hint="give the resource your RDMA device plugin advertises, e.g. "
                             "--rdma-resource rdma/hca_shared_devices_a (optionally =COUNT)")
    if sep and (not count.isdigit() or int(count) < 1):
        raise UserError(f"--rdma-resource {text!r}: the count must be a positive integer",
                        hint="e.g. --rdma-resource rdma/hca_shared_devices_a=1")
    return name, int(count) if sep else 1


def _check_label_key(key: str, flag: str, text: str) -> None:
    """A label or taint key: [PREFIX/]NAME, PREFIX a DNS-1123 subdomain, NAME a qualified name."""
    prefix, slash, name = key.rpartition("/")
    if (not LABEL_NAME.fullmatch(name) or len(name) > 63
            or (slash and (not DNS1123_SUBDOMAIN.fullmatch(prefix) or len(prefix) > 253))):
        raise UserError(f"{flag} {text!r}: {key!r} is not a valid label key",
                        hint="[PREFIX/]NAME: NAME at most 63 letters, digits, '-', '_' or '.', starting and ending "
                             "with a letter or digit; PREFIX a DNS subdomain, e.g. nvidia.com/gpu.product")


def _check_label_value(value: str, flag: str, text: str) -> None:
    if value and (not LABEL_NAME.fullmatch(value) or len(value) > 63):
        raise UserError(f"{flag} {text!r}: {value!r} is not a valid label value",
                        hint="at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit")


def parse_node_selector(items: tuple[str, ...]) -> dict[str, str]:
    """--node-selector KEY=VALUE (repeatable): the pod's nodeSelector."""
    selector: dict[str, str] = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep:
            raise UserError(f"--node-selector {text!r} is not KEY=VALUE",
                            hint="e.g. --node-selector nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB")
        _check_label_key(key, "--node-selector", text)
        _check_label_value(value, "--node-selector", text)
        if selector.get(key, value) != value:
            raise UserError(f"--node-selector {key} is given twice ({selector[key]!r} and {value!r})",
                            hint="a node has one value per label: give the key once")
        selector[key] = value
    return selector


def parse_toleration(text: str) -> dict[str, str]:
    """--toleration KEY[=VALUE]:EFFECT: Equal with a value, Exists without (as `kubectl taint` writes taints)."""
    body, sep, effect = text.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS:
        raise UserError(f"--toleration {text!r} is not KEY[=VALUE]:EFFECT with EFFECT one of {', '.join(TAINT_EFFECTS)}",
                        hint="e.g. --toleration nvidia.com/gpu:NoSchedule or --toleration dedicated=training:NoExecute")
    key, eq, value = body.partition("=")
    _check_label_key(key, "--toleration", text)
    _check_label_value(value, "--toleration", text)
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def check_secret_name(name: str) -> str:
    return _dns_name(name, DNS1123_SUBDOMAIN, 253, f"--image-pull-secret {name!r} is not a valid Secret name",
                     "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit "
                     "(DNS-1123 subdomain), e.g. --image-pull-secret registry-credentials")


def parse_quantity(text: str, flag: str) -> str:
    """--cpu / --memory: a positive Kubernetes quantity (8, 500m, 2.5; 32Gi, 64G), as given."""
    example = "8 (or 7500m)" if flag == "--cpu" else "32Gi"
    m = QUANTITY.fullmatch(text.strip())
    if not m:
        raise UserError(f"{flag} {text!r} is not a Kubernetes quantity", hint=f"e.g. {flag} {example}")
    suffix = m.group("suffix") or ""
    scale = 10 ** float(suffix[1:]) if suffix[:1] in ("e", "E") else QUANTITY_SUFFIXES[suffix]
    value = float(m.group("number")) * scale
    if flag == "--cpu" and value < 0.001:
        raise UserError(f"{flag} {text!r} is less than 1m (a thousandth of a CPU)", hint=f"e.g. {flag} {example}")
    if flag == "--memory" and value < 2 ** 20:
        raise UserError(f"{flag} {text!r} is {value:g} bytes", hint=f"give a unit, e.g. {flag} {example}")
    return text.strip()


# ---------------------------------------------------------------- building


@dataclass
class Manifest:
    data: dict  # the PaddleJob
    notes: list[str]  # for stderr: what the user should know about this manifest
    net_env: dict[str, str]  # the preset's host-independent variables (in the container env)


def _pod_network(spec: ManifestSpec, device: str) -> tuple[NetworkOptions, list[str], dict[str, str], list[str], str]:
    """(the network options the pods' trainctl gets, extra `--env` pairs for them, container env,
    notes, the built-in preset it comes down to)."""
    notes: list[str] = []
    pod_net, kind, extra_env = spec.net, spec.net, []
    if spec.net not in netpresets.PRESETS:
        path = netpresets.find_user_preset(spec.net)
        if path is None:
            names = sorted(set(netpresets.PRESETS) | set(netpresets.named_presets()))
            raise UserError(f"--net {spec.net!r} is not a preset",
                            hint=f"use one of {', '.join(names)}, or a preset .yml file")
        user_name, base, user_env = netpresets.load_user_preset(path)
        kind = base or "nccl"
        if not path.startswith(str(netpresets.preset_dirs()[-1])):
            # a file of this machine: the pods get its base preset, and its values as --env (which win)
            pod_net = kind
            for key, value in user_env.items():
                if value:
                    extra_env.append(f"{key}={value}")
                else:
                    notes.append(f"preset {user_name} removes {key}, which --env cannot express: the pods "
                                 f"keep {key} as the {kind} preset sets it")
            notes.append(f"preset file {path}: the pods get its base preset ({kind}) and its values as --env")
    env: dict[str, str] = {}
    if kind == "auto":
        pod_net = "auto"
        notes.append("--net auto: each pod chooses its preset from its own /sys/class/infiniband when it starts "
                     "(tcp, rdma or gpudirect; gloo on CPU), so the manifest sets no network variable and "
                     "requests no RDMA device; pass --net rdma (with --rdma-resource or --host-network) for RDMA")
    else:
        # no host facts: this machine's /sys says nothing about the cluster's nodes
        net = netpresets.build_env(spec.net, netpresets.HostFacts(), device=device, nnodes=spec.nodes,
                                   ifname=spec.ifname, hca=spec.hca, gid_index=spec.gid_index,
                                   gdr_level=spec.gdr_level, nccl_debug=spec.nccl_debug, strict=False)
        env = dict(net.env)
        if spec.ifname is None and kind in ("tcp", "rdma", "gpudirect", "gloo"):
            notes.append(f"--net {kind}: each pod takes the interface of its default route (eth0 in the pod "
                         "network, the node's with --host-network); pass --ifname to name one")
    pods = NetworkOptions(net=pod_net, ifname=spec.ifname or None, hca=spec.hca or None, gid_index=spec.gid_index,
                          gdr_level=spec.gdr_level if kind == "gpudirect" else NetworkOptions.gdr_level,
                          nccl_debug=spec.nccl_debug)
    return pods, extra_env, env, notes, kind


def pod_train_options(spec: ManifestSpec, network: NetworkOptions, extra_env: list[str]) -> dict[str, Any]:
    """The `trainctl train` option values each pod runs with (by parameter name, in command-line order)."""
    options: dict[str, Any] = {"config": spec.config, "launcher": "kubeflow", "resume": "auto"}
    if spec.gpus_per_node:
        options["gpus"] = ",".join(str(i) for i in range(spec.gpus_per_node))
    else:
        options["device"] = "cpu"
    options.update({name: getattr(network, name) for name in NETWORK_FIELDS})
    if spec.output:
        options["output"] = posixpath.join(spec.output.path, spec.name)
    options["env"] = (*extra_env, *spec.env)
    options["overrides"] = tuple(spec.overrides)
    return options


def build(spec: ManifestSpec, train_words: Callable[[Mapping[str, Any]], list[str]]) -> Manifest:
    """The PaddleJob as a dict; UserError for anything invalid (nothing is printed before).

    `train_words` turns the pods' `trainctl train` option values into words
    (`trainctl.cli.forward.train_words`, the one function that writes train's command line)."""
    if spec.nodes < 1:
        raise UserError(f"--nodes must be at least 1, not {spec.nodes}", hint="e.g. --nodes 2 (one pod per node)")
    if spec.gpus_per_node < 0:
        raise UserError(f"--gpus-per-node must be 0 or more, not {spec.gpus_per_node}", hint="0 trains on CPUs")
    if not spec.image.strip() or any(c.isspace() for c in spec.image):
        raise UserError(f"--image {spec.image!r} is not an image reference",
                        hint="e.g. --image registry.example.com/team/trainctl:0.1.0")
    if not 0 < spec.port < 65536:
        raise UserError(f"--port {spec.port} is not a TCP port", hint=f"e.g. --port {DEFAULT_PORT}")
    check_name(spec.name)
    check_pod_names(spec.name, spec.nodes)
    if spec.namespace is not None:
        check_namespace(spec.namespace)
    netpresets.parse_env_pairs(spec.env)  # KEY=VALUE check
    node_selector = parse_node_selector(spec.node_selector)
    tolerations = [parse_toleration(text) for text in spec.tolerations]
    pull_secrets = [check_secret_name(name) for name in dict.fromkeys(spec.image_pull_secrets)]
    requests = {key: parse_quantity(value, flag) for key, value, flag in
                (("cpu", spec.cpu, "--cpu"), ("memory", spec.memory, "--memory")) if value is not None}
    device = "gpu" if spec.gpus_per_node else "cpu"
    network, extra_env, net_env, notes, kind = _pod_network(spec, device)
    rdma = kind in RDMA_PRESETS
    resource = parse_resource(spec.rdma_resource) if spec.rdma_resource else None
    if rdma and not resource and not spec.host_network:
        raise UserError(f"--net {spec.net} needs the pods to reach RDMA devices",
                        hint="pass --rdma-resource NAME (what your RDMA device plugin advertises, e.g. "
                             "rdma/hca_shared_devices_a) and/or --host-network")
    if rdma and spec.host_network and not resource and not spec.privileged:
        notes.append("--host-network gives the pods the nodes' RDMA interfaces but not /dev/infiniband: add "
                     "--rdma-resource (a device plugin) or --privileged, or verbs fail and NCCL falls back to sockets")
    if spec.data and spec.output and spec.data.path == spec.output.path:
        raise UserError(f"--data-pvc and --output-pvc both mount at {spec.data.path}",
                        hint="give them different mount paths")
    if spec.output is None:
        notes.append("no --output-pvc: checkpoints stay in each container, so a restarted pod starts over "
                     "(and pods of a multi-pod job would disagree); give a ReadWriteMany claim, e.g. "
                     "--output-pvc train-output:/output")

    args = ["train", *train_words(pod_train_options(spec, network, extra_env)), *spec.train_args]

    env = [{"name": k, "value": v} for k, v in net_env.items()]
    env += [
        {"name": "TRAINCTL_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "TRAINCTL_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    limits: dict[str, int | str] = {}
    if spec.gpus_per_node:
        limits[GPU_RESOURCE] = spec.gpus_per_node
    if resource:
        limits[resource[0]] = resource[1]
    limits.update(requests)  # --cpu, --memory: request and limit alike
    container: dict = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["trainctl"],
        "args": args,
        "workingDir": spec.workdir,
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": spec.port}],
    }
    if limits:
        container["resources"] = {"limits": limits}
    if requests:
        container["resources"]["requests"] = dict(requests)
    volume_mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    for label, mount in (("data", spec.data), ("output", spec.output)):
        if mount:
            volume_mounts.append({"name": label, "mountPath": mount.path})
            volumes.append({"name": label, "persistentVolumeClaim": {"claimName": mount.claim}})
    container["volumeMounts"] = volume_mounts
    security: dict = {}
    if rdma:
        security["capabilities"] = {"add": ["IPC_LOCK"]}  # verbs pin (lock) memory for the HCA
    if spec.privileged:
        security["privileged"] = True
    if security:
        container["securityContext"] = security
    pod_spec: dict = {"containers": [container], "volumes": volumes}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    if spec.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"  # `<job>-worker-0` must still resolve
    metadata: dict = {"name": spec.name, "labels": {"app.kubernetes.io/managed-by": "trainctl"}}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    job = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "paddleReplicaSpecs": {
                "Worker": {
                    "replicas": spec.nodes,
                    "restartPolicy": "OnFailure",
                    "template": {"spec": pod_spec},
                }
            }
        },
    }
    return Manifest(job, notes, net_env)


def to_yaml(manifest: Manifest, spec: ManifestSpec, version: str) -> str:
    import yaml

    header = [
        f"# PaddleJob {spec.name}: {spec.nodes} pod(s) x "
        + (f"{spec.gpus_per_node} GPU(s)" if spec.gpus_per_node else "CPU") + f", written by trainctl {version}",
        f"# kubectl apply -f THIS_FILE; kubectl logs -f {spec.name}-worker-0"
        + (f" -n {spec.namespace}" if spec.namespace else ""),
    ]
    body = yaml.safe_dump(manifest.data, sort_keys=False, default_flow_style=False, width=1000)
    return "\n".join(header) + "\n" + body


def kubectl_apply(text: str, kubectl: str = "kubectl", timeout: float = 120) -> str:
    """`kubectl apply -f -` with the manifest on stdin; kubectl's own output, or its error as one line."""
    import shutil
    import subprocess

    from trainctl.errors import RuntimeFailure

    path = shutil.which(kubectl)
    if path is None:
        raise UserError("--apply needs kubectl, which is not on PATH",
                        hint="install kubectl, or drop --apply and run: trainctl k8s-manifest ... | kubectl apply -f -")
    try:
        proc = subprocess.run([path, "apply", "-f", "-"], input=text, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"kubectl apply did not answer within {timeout:.0f}s",
                             hint="check `kubectl cluster-info`; the manifest was not applied (or not confirmed)") from None
    if proc.returncode != 0:
        message = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
        raise RuntimeFailure(f"kubectl apply failed: {message}",
                             hint="fix what kubectl says (context, namespace, the PaddleJob CRD installed?) and rerun")
    return proc.stdout.rstrip("\n")
