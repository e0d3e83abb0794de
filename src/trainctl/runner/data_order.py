"""Inside a worker: a data order that a resumed run can continue (a ppdet Trainer callback).

ppdet's DistributedBatchSampler shuffles with the sampler's own
epoch counter, which starts at 0 in every process, so an epoch-3 resume
replays epoch 0's order; and its loader builds the next epoch's iterator (and
its worker processes' seeds, drawn from numpy) at the end of the previous
one. DataOrder makes each epoch's batches a function of (seed, rank, epoch)
only: at the start of each training epoch it sets the sampler's epoch, reseeds
python/numpy/paddle from (seed + rank, epoch) when --seed is given, and only
then builds the iterator. (Without --seed, a fresh start's first epoch keeps
the iterator ppdet built with the Trainer: it already reads epoch 0's order,
and its prefetched batches are not read twice.) A mid-epoch resume (k iterations into the epoch)
then draws and discards the first k batches, so the transforms' random
draws, in the main process or in DataLoader workers, are the ones the
uninterrupted run made; ppdet's step counter is shifted by k so logs, the
LR schedule's view and checkpoints count from the true iteration.
"""

from __future__ import annotations

import threading

from ppdet.engine.callbacks import Callback


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """One seed per (run seed, rank, epoch); fits numpy's 32 bits."""
    return (seed * 1_000_003 + rank * 10_007 + epoch) % (2 ** 32)


class _LazyIterable:
    """Stands in for ppdet's paddle DataLoader: iter() returns an iterator that builds
    the real one at its first next(), so the iterator ppdet makes at the end of an
    epoch costs nothing and DataOrder decides the next epoch's order first."""

    def __init__(self, dataloader):
        self.dataloader = dataloader

    def __iter__(self):
        return _LazyIterator(self.dataloader)

    def __len__(self):
        return len(self.dataloader)


class _LazyIterator:
    def __init__(self, dataloader):
        self.dataloader, self.real = dataloader, None

    def __iter__(self):
        return self

    def __next__(self):
        if self.real is None:
            self.real = iter(self.dataloader)
        return next(self.real)


def _stop(iterator, timeout: float = 30.0) -> None:
    """Stop the iterator ppdet built eagerly. Dropping it is not enough: paddle's single-process
    iterator keeps prefetching in a thread that holds a reference to it, and that thread draws from
    numpy's random state (the random transforms) while the epoch's own iterator does: the draws race
    and a seeded run stops being repeatable (measured: 52.67 % then 49.94 % mAP with the same seed).

    paddle 3.3.1's own shutdown (`_DataLoaderIterSingleProcess._try_shutdown_all`) sets the thread's
    done event, closes its queue and then, if the thread is still alive at that instant (it is: it
    is reading a batch or waiting to push one), sleeps a whole second before looking again: 1 s on
    the path to the first iteration. The same steps are taken here, but the thread is joined (it
    ends as soon as its current sample is read) before paddle's shutdown runs, which then finds it
    dead and does not sleep. Other iterators (the multi-process one, worker_num > 0, whose thread
    waits on its workers) get paddle's shutdown as it is."""
    thread = getattr(iterator, "_thread", None)
    done = getattr(iterator, "_thread_done_event", None)
    queue = getattr(iterator, "_blocking_queue", None)
    if (type(iterator).__name__ == "_DataLoaderIterSingleProcess" and isinstance(thread, threading.Thread)
            and done is not None and not getattr(iterator, "_shutdown", True)):
        done.set()
        if queue is not None:
            queue.close()  # wakes a push into a full queue; closing twice (paddle's shutdown below) is harmless
        if thread is not threading.current_thread():
            thread.join(timeout)
    shutdown = getattr(iterator, "_try_shutdown_all", None)
    if callable(shutdown):
        shutdown()


class DataOrder(Callback):
    """Epoch data order from (seed, rank, epoch); skips the first `skip` batches of `skip_epoch`."""

    def __init__(self, trainer, seed: int | None, rank: int, skip_epoch: int | None = None, skip: int = 0):
        super().__init__(trainer)
        self.seed, self.rank = seed, rank
        self.skip_epoch, self.skip = skip_epoch, skip
        self.offset = 0
        self.epoch = None  # the training epoch in progress
        loader = getattr(trainer, "loader", None)
        self.loader = loader if loader is not None and hasattr(loader, "dataloader") else None
        # the iterator ppdet built with the Trainer (it has been reading batches since): the first
        # epoch of an unseeded fresh start uses it as it is (on_epoch_begin); with a seed, its thread's
        # random draws must stop before anything else draws, so it is stopped here
        self.eager = None
        if self.loader is not None:
            self.loader.dataloader = _LazyIterable(self.loader.dataloader)
            if seed is None and not skip:
                self.eager = self.loader.loader
            else:
                eager, self.loader.loader = self.loader.loader, iter(self.loader.dataloader)
                _stop(eager)

    def on_epoch_begin(self, status):
        # ppdet calls on_epoch_begin for an evaluation too, before it sets mode "eval":
        # the same epoch_id again is that call
        if status.get("mode") != "train" or self.loader is None or status["epoch_id"] == self.epoch:
            return
        epoch = self.epoch = int(status["epoch_id"])
        eager, self.eager = self.eager, None
        if eager is not None:
            if epoch == 0:
                # what this epoch would get anyway: the sampler's epoch-0 order (np.random.RandomState(0)
                # in paddle's DistributedBatchSampler), transforms drawing from an unseeded state; its
                # prefetched batches are not read a second time
                self.loader.loader = eager
                self.offset = 0
                return
            _stop(eager)
        sampler = getattr(self.loader, "_batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if self.seed is not None:
            import random

            import numpy as np
            import paddle

            value = epoch_seed(self.seed, self.rank, epoch)
            random.seed(value)
            np.random.seed(value)
            paddle.seed(value)
        self.loader.loader = iter(self.loader.dataloader)
        self.offset = 0
        if epoch == self.skip_epoch and self.skip:
            for _ in range(self.skip):
                next(self.loader.loader)
            self.offset = self.skip

    def on_step_begin(self, status):
        if self.offset and status.get("mode") == "train":
            status["step_id"] = int(status["step_id"]) + self.offset
