"""Two Kubeflow PaddleJob "pods" on one machine, and one of them failing.

Each pod is a network namespace (tests/netns_pair.py) with what the pod would have:

  hostname     <job>-worker-<i> (its own UTS namespace: `unshare --uts` + `hostname`)
  /etc/hosts   `<pod IP> <job>-worker-<i>`, as kubelet writes it; pod 1's also has worker 0's
               address under its service name `<job>-worker-0`, standing in for the cluster DNS
               (`ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts)
  route        a default route over its veth, as a pod has over eth0
  environment  exactly what the training operator sets (release-1.9 envvar.go): PYTHONUNBUFFERED,
               PADDLE_JOB_ID, PADDLE_NNODES, PADDLE_MASTER (worker 0: `$(POD_IP_DUMMY):port`
               with POD_IP_DUMMY its pod IP; the others: `<job>-worker-0:port`), plus the PATH,
               HOME and HOSTNAME a container has. Nothing a user adds: no GLOO_SOCKET_IFNAME and
               no --ifname (trainctl's gloo preset takes the default route's interface).

Both run the command of the PaddleJob that `trainctl k8s-manifest -c roadsign_cpu_smoke.yml
--nodes 2 --gpus-per-node 0 --output-pvc ...` writes (`trainctl train --config roadsign_cpu_smoke.yml
--launcher kubeflow --resume auto --device cpu --output <volume>/<job> --override ...`, the manifest
validated as in tests/k8s_schema.py), in its working directory, into one shared run directory
(the ReadWriteMany output volume). The manifest's downward-API variables (TRAINCTL_POD_NAME/IP)
are left out on purpose: the pods find their index in their hostname and their address in
/etc/hosts, as in a PaddleJob written by hand. Once a checkpoint is complete, every
process of pod 1 is killed (its container dies). As in Kubernetes, the surviving pod's
trainctl sees its peer gone and exits non-zero, and restartPolicy OnFailure restarts each
failed container with the same command; both continue from the newest complete checkpoint
and finish the job.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netns_pair import NetnsPair

pytestmark = [pytest.mark.paddle, pytest.mark.netns, pytest.mark.slow]

JOB = "roadsign-k8s"
PORT = 37777
EPOCHS = 2  # killed after epoch 0's checkpoint; the restarted pods train epoch 1


class Pod:
    def __init__(self, pair: NetnsPair, index: int, container: dict, run_dir: Path, home: Path):
        self.pair, self.index, self.container, self.run_dir, self.home = pair, index, container, run_dir, home
        self.name = f"{JOB}-worker-{index}"
        self.ns = pair.ns[index]
        self.addr = pair.addr[index]
        self.proc: subprocess.Popen | None = None
        self.outputs: list[tuple[str, str]] = []  # (stdout: paddle launch's, stderr: trainctl's) per start

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "HOSTNAME": self.name,
            # the training operator's variables, exactly
            "PYTHONUNBUFFERED": "1",
            "PADDLE_JOB_ID": JOB,
            "PADDLE_NNODES": "2",
        }
        if self.index == 0:
            env["POD_IP_DUMMY"] = self.addr
            env["PADDLE_MASTER"] = f"{self.addr}:{PORT}"
        else:
            env["PADDLE_MASTER"] = f"{JOB}-worker-0:{PORT}"
        return env

    def start(self) -> None:
        command = self.container["command"] + self.container["args"]  # as the container runs it
        argv = ["ip", "netns", "exec", self.ns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                self.name, "env", "-i", *[f"{k}={v}" for k, v in self.environment().items()], *command]
        self.proc = subprocess.Popen(argv, cwd=self.container["workingDir"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def wait(self, timeout: float) -> int:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            self.outputs.append((out, err))
            raise AssertionError(f"pod {self.index} still running after {timeout:.0f}s:\n{self.tail()}") from None
        self.outputs.append((out, err))
        return self.proc.returncode

    def tail(self) -> str:
        out, err = self.outputs[-1] if self.outputs else ("", "")
        return f"--- stdout\n{out[-2500:]}\n--- stderr\n{err[-2500:]}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def pods(sample_dataset, tmp_path):
    with NetnsPair(prefix="tck", second_octet=234) as pair:
        etc = [Path("/etc/netns") / ns for ns in pair.ns]
        try:
            for i, ns in enumerate(pair.ns):
                subprocess.run(["ip", "-n", ns, "route", "add", "default", "dev", pair.ifname[i]], check=True)
                hosts = f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{pair.addr[i]}\t{JOB}-worker-{i}\n"
                if i:
                    hosts += f"{pair.addr[0]}\t{JOB}-worker-0\n"  # the cluster DNS's record of worker 0's service
                etc[i].mkdir(parents=True, exist_ok=True)
                (etc[i] / "hosts").write_text(hosts)
            (tmp_path / "home").mkdir()
            container = _generated_container(tmp_path, sample_dataset / "dataset" / "roadsign_voc")
            run_dir = tmp_path / "output" / JOB  # on the output volume, shared by both pods
            made = [Pod(pair, i, container, run_dir, tmp_path / "home") for i in (0, 1)]
            yield made
        finally:
            for pod in locals().get("made", []):
                pod.stop()
            for directory in etc:
                shutil.rmtree(directory, ignore_errors=True)


def _generated_container(workdir: Path, data: Path) -> dict:
    """The pods' container from `trainctl k8s-manifest` (validated), its volume at workdir/output."""
    import yaml

    import k8s_schema

    proc = subprocess.run([sys.executable, "-m", "trainctl", "k8s-manifest", "-c", "roadsign_cpu_smoke.yml",
                           "--nodes", "2", "--gpus-per-node", "0", "--image", "trainctl:test", "--name", JOB,
                           "--port", str(PORT), "--output-pvc", f"output:{workdir / 'output'}",
                           "--workdir", str(workdir), "-o", f"epoch={EPOCHS}",
                           "-o", f"TrainDataset.dataset_dir={data}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job = yaml.safe_load(proc.stdout)
    k8s_schema.validate(job)
    (container,) = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    assert container["args"][:7] == ["train", "--config", "roadsign_cpu_smoke.yml", "--launcher", "kubeflow",
                                     "--resume", "auto"]
    return container


def _resumed_epochs(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"resumed from \S+ at epoch (\d+)", log)]


def test_two_pods_train_together_and_continue_after_one_fails(pods, record_property):
    from trainctl.runner.checkpoint import latest_checkpoint

    run_dir = pods[0].run_dir
    for pod in pods:
        pod.start()
    try:
        # trains together until the first complete checkpoint, then pod 1's container dies
        deadline = time.monotonic() + 300
        while latest_checkpoint(run_dir) is None:
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            for pod in pods:
                if pod.proc.poll() is not None:
                    pod.wait(10)
                    raise AssertionError(f"pod {pod.index} ended early:\n{pod.tail()}")
            time.sleep(0.2)
        pods[1].pair.kill_all(1)
        killed_at = time.monotonic()
        assert pods[1].wait(30) != 0
        survivor = pods[0].wait(180)
        record_property("survivor_exit_after_peer_killed_s", round(time.monotonic() - killed_at, 1))
        assert survivor != 0, pods[0].tail()
        newest = latest_checkpoint(run_dir)
        assert newest is not None and newest["epoch"] < EPOCHS, newest  # "epoch": epochs done; the job was cut short

        # restartPolicy OnFailure: each failed container runs the same command again
        for pod in pods:
            pod.start()
        for pod in pods:
            assert pod.wait(400) == 0, pod.tail()
    finally:
        for pod in pods:
            pod.stop()

    # the survivor's trainctl names the failure in one line (its worker's log tail follows as "  | " lines)
    own = [line for line in pods[0].outputs[0][1].splitlines() if not line.startswith("  | ")]
    assert not any("Traceback" in line for line in own), pods[0].outputs[0][1][-3000:]
    errors = [line for line in own if line.startswith("trainctl: error:")]
    assert errors and "rank 0" in errors[-1], pods[0].outputs[0][1][-3000:]
    records = [json.loads((run_dir / name).read_text()) for name in ("run.json", "run.node1.json")]
    for index, record in enumerate(records):
        assert record["status"] == "done" and record["hostname"] == f"{JOB}-worker-{index}"
        placement = record["plan"]["placement"]
        assert (placement["kind"], placement["job"], placement["index"], placement["nnodes"]) == \
            ("kubeflow", JOB, index, 2)
        assert placement["pod"] == f"{JOB}-worker-{index}" and placement["pod_from"] == "the hostname"
        assert placement["host"] == pods[index].addr
        host_from = dict(placement["rows"])["this pod"]
        assert ("PADDLE_MASTER" if index == 0 else "/etc/hosts") in host_from, host_from
        assert placement["master"] == f"{pods[0].addr}:{PORT}"  # pod 1 resolved the service name
        assert set(placement["kept"]) == {"PADDLE_JOB_ID", "PADDLE_MASTER", "PADDLE_NNODES"}
        local = record["plan"]["nodes"][index]
        assert local["local"] and not set(placement["kept"]) & set(local["unset"])  # kept, not removed
        assert record["net"]["env"]["GLOO_SOCKET_IFNAME"] == pods[index].pair.ifname[index]
    for index in (0, 1):
        log = (run_dir / "logs" / f"node{index}" / "workerlog.0").read_text(errors="replace")
        assert f"rank {index} of 2" in log
        assert _resumed_epochs(log)[-1:] == [newest["epoch"]], log[-3000:]  # from the newest complete checkpoint
    index = json.loads((run_dir / "checkpoints.json").read_text())
    assert "model_final" in [c["name"] for c in index["checkpoints"]]
    assert (run_dir / "model_final.pdparams").stat().st_size > 1_000_000
