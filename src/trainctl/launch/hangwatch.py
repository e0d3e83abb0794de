"""--hang-timeout: notice that no rank of this node completes iterations any more, dump every
worker's stack into its log (SIGUSR1: faulthandler in the worker), and say who stopped first.
Reads the heartbeat files the workers write (launch/progress.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from trainctl.launch import progress


class HangWatch:
    """--hang-timeout: reads this node's heartbeat files; on a hang, dumps every worker's stack
    into its log (SIGUSR1, faulthandler in the worker) and says who stopped first."""

    def __init__(self, run_root: Path, log_dir: Path, first_rank: int, nproc: int, timeout: float, direct: bool,
                 shown_dir: str = "logs"):
        self.run_root, self.log_dir, self.timeout, self.direct = run_root, log_dir, timeout, direct
        self.shown_dir = shown_dir  # the log directory as the user gave it (relative to the working directory)
        self.ranks = {first_rank + local: local for local in range(nproc)}  # global -> local
        self.next_check = 0.0
        self.culprits: list[int] = []  # after diagnose: the ranks that stopped first

    def log_path(self, local: int) -> Path:
        return self.log_dir / f"workerlog.{local}"

    def records(self) -> dict[int, dict | None]:
        return {rank: progress.read_heartbeat(self.run_root, rank) for rank in self.ranks}

    def check(self, pids: dict[int, int]) -> str | None:
        """None while the job progresses; the hang's description once it is hung (stacks dumped)."""
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + 1.0
        records = self.records()
        if not progress.stalled(records, time.time(), self.timeout):
            return None
        return self.diagnose(records, pids)

    def diagnose(self, records: dict[int, dict | None], pids: dict[int, int], wait: float = 5.0) -> str:
        by_rank = {rank: pids.get(local) for rank, local in self.ranks.items()}
        states = {rank: progress.proc_state(pid)[0] if pid else None for rank, pid in by_rank.items()}
        sizes = {rank: self._size(self.log_path(self.ranks[rank])) for rank in self.ranks}
        signalled = []
        for rank, pid in by_rank.items():
            if pid and states[rank] not in (None, "T", "t", "Z"):
                try:
                    os.kill(pid, signal.SIGUSR1)
                    signalled.append(rank)
                except ProcessLookupError:
                    pass
        dumps: dict[int, str] = {}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(dumps) < len(signalled):
            time.sleep(0.2)
            for rank in signalled:
                text = self._read_from(self.log_path(self.ranks[rank]), sizes[rank])
                if "most recent call first" in text:
                    time.sleep(0.3)  # let faulthandler finish writing every thread
                    dumps[rank] = self._read_from(self.log_path(self.ranks[rank]), sizes[rank])
        answered = {rank: rank in dumps for rank in signalled}
        ranks = sorted(self.ranks)
        culprits, why = progress.stopped_first(ranks, records, states, answered)
        self.culprits = culprits
        last = max((float(r["time"]) for r in records.values() if r), default=time.time())
        parts = [f"no rank completed an iteration for {time.time() - last:.0f}s "
                 f"(--hang-timeout {progress.format_duration(self.timeout)})"]
        for rank in culprits:
            parts.append(f"rank {rank} stopped first: {why[rank]}; {progress.describe_record(records.get(rank))}")
        for rank in ranks:
            if rank in culprits:
                continue
            frame = progress.innermost_frame(dumps.get(rank, ""))
            log = Path(self.shown_dir) / f"workerlog.{self.ranks[rank]}"
            if frame:
                parts.append(f"rank {rank} is blocked in {frame} (stack in {log})")
            elif states.get(rank) is None:
                parts.append(f"rank {rank} has exited")
        if not culprits:
            parts.append("no rank on this node stands out: a rank on another node may have stopped, "
                         "or every rank waits in the same place (see the stacks)")
        return "; ".join(parts)

    @staticmethod
    def _size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    @staticmethod
    def _read_from(path: Path, offset: int) -> str:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(256 * 1024).decode("utf-8", "replace")
        except OSError:
            return ""
