"""runner/data_order.py's DataOrder on paddle's real DataLoader: what it does with the iterator ppdet
builds with its Trainer (one subprocess: the pytest process stays paddle-free).

- with a seed, the eager iterator is stopped at once and without paddle's 1 s polling sleep
  (paddle 3.3.1's _shutdown_thread sleeps a whole second when the reading thread is alive,
  which it always is right after the Trainer is built: that second was on the worker's path
  to its first iteration);
- without a seed, a fresh start's first epoch keeps it: the same batches, in the same order,
  as a freshly built epoch-0 iterator gives.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.paddle, pytest.mark.slow]

SCRIPT = r'''
import json, threading, time
import numpy as np
from paddle.io import DataLoader, Dataset, DistributedBatchSampler
from trainctl.runner import data_order

class Indices(Dataset):
    """Sample i is i, read slowly enough that the loader's thread is always busy."""
    def __len__(self):
        return 40
    def __getitem__(self, i):
        time.sleep(0.005)
        return np.array([i], dtype=np.int64)

class Loader:  # the attributes of ppdet's BaseDataLoader that DataOrder uses
    def __init__(self):
        self._batch_sampler = DistributedBatchSampler(Indices(), batch_size=2, shuffle=True, drop_last=True)
        self.dataloader = DataLoader(Indices(), batch_sampler=self._batch_sampler, num_workers=0, return_list=True)
        self.loader = iter(self.dataloader)  # eager, as ppdet's BaseDataLoader.__call__ does

class Trainer:
    def __init__(self):
        self.loader = Loader()

def epoch(loader):
    out = []
    for batch in loader.loader:
        batch = batch[0] if isinstance(batch, (list, tuple)) else batch
        out += [int(x) for x in np.asarray(batch).reshape(-1)]
    return out

out = {}
seeded = Trainer()
eager = seeded.loader.loader
time.sleep(0.1)  # its thread is reading batches now
out["eager_alive"] = eager._thread.is_alive()
thread = eager._thread
t = time.perf_counter()
order = data_order.DataOrder(seeded, seed=7, rank=0)
out["stop_seconds"] = time.perf_counter() - t
out["stopped_thread_alive"] = thread.is_alive()
order.on_epoch_begin({"mode": "train", "epoch_id": 0})
out["seeded_epoch0"] = epoch(seeded.loader)

fresh = Trainer()
kept = fresh.loader.loader
time.sleep(0.1)
order = data_order.DataOrder(fresh, seed=None, rank=0)
order.on_epoch_begin({"mode": "train", "epoch_id": 0})
out["kept"] = fresh.loader.loader is kept
out["unseeded_epoch0"] = epoch(fresh.loader)
order.on_epoch_begin({"mode": "train", "epoch_id": 1})
out["unseeded_epoch1"] = epoch(fresh.loader)
print("RESULT " + json.dumps(out))
'''


def test_data_order_stops_the_eager_iterator_at_once_or_keeps_it_for_epoch_0():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    assert out["eager_alive"]
    assert out["stop_seconds"] < 0.5, out["stop_seconds"]  # paddle's own shutdown: >= 1 s
    assert not out["stopped_thread_alive"]
    assert out["kept"]
    # epoch 0: the same order with or without a seed (paddle's sampler shuffles with RandomState(epoch))
    assert out["unseeded_epoch0"] == out["seeded_epoch0"]
    assert sorted(out["unseeded_epoch0"]) == list(range(40)) and out["unseeded_epoch0"] != list(range(40))
    assert sorted(out["unseeded_epoch1"]) == list(range(40)) and out["unseeded_epoch1"] != out["unseeded_epoch0"]
