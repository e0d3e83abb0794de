"""ppdet Trainer internals.

ppdet has no public API for a Trainer's callbacks and metrics; these are the only accesses to its
private attributes. Checked on paddledet 2.6.0 (the wheel, ppdet/engine/trainer.py) and the
release-2.7.1 and develop checkouts: in train, eval and test mode `Trainer._compose_callback` is a
ComposeCallback whose `_callbacks` list is the one it calls (the same list object as
`Trainer._callbacks` at construction), and `Trainer._metrics` is the list of metric objects
(VOCMetric, COCOMetric, ...) built by `_init_metrics`.
"""

from __future__ import annotations


def trainer_callbacks(trainer) -> list:
    """The list ppdet's ComposeCallback calls; changing it in place changes what runs."""
    return trainer._compose_callback._callbacks


def add_callback(trainer, callback) -> None:
    """Run `callback` after ppdet's own ones."""
    trainer_callbacks(trainer).append(callback)


def replace_callbacks(trainer, callbacks: list) -> None:
    """Make `callbacks` the trainer's whole callback list (ComposeCallback's and `Trainer._callbacks`)."""
    trainer_callbacks(trainer)[:] = callbacks
    trainer._callbacks = callbacks


def trainer_metrics(trainer) -> list:
    """The trainer's metric objects (`Trainer._metrics`)."""
    return trainer._metrics
