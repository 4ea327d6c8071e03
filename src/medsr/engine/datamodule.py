"""Training data for the engine: the task's dataset batched by the task's step sampler.

The whole run is one Lightning epoch of ``train.steps`` batches. The sampler starts at the task's step (so a
resumed run replays exactly the batches an uninterrupted one sees) and takes this rank's shard; Lightning's own
distributed sampler replacement is turned off by the trainer (``use_distributed_sampler=False``).
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import lightning.pytorch as pl
import torch

from medsr.config import RunConfig
from medsr.data.datasets import worker_init_fn


class ResumedSampler(torch.utils.data.Sampler):
    """Yields a batch sampler's batches from its ``start_step`` on, but reports the whole run's length.

    Lightning counts the batches of the interrupted epoch from its checkpoint; a length of ``total`` keeps its
    count and the data in step (it reaches ``total`` exactly when the batches run out).
    """

    def __init__(self, sampler: Any, total: int):
        self.sampler, self.total = sampler, total

    def __iter__(self) -> Iterator[Any]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return self.total


class TaskDataModule(pl.LightningDataModule):
    """The train and validation datasets of ``task`` (a :class:`~medsr.tasks.base.TrainingTask`), built once;
    ``train_dataloader`` needs an attached trainer."""

    def __init__(self, cfg: RunConfig, task: Any):
        super().__init__()
        self.cfg, self.task = cfg, task

    @functools.cached_property
    def train_dataset(self) -> Any:
        return self.task.dataset(self.cfg.data.train_split, training=True)

    @functools.cached_property
    def val_dataset(self) -> Any:
        return self.task.dataset(self.cfg.data.val_split, training=False)

    def check(self) -> None:
        """Fail early, before any process starts training, on unreadable data."""
        _ = self.train_dataset, self.val_dataset

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        start = int(self.task.step)
        total = self.cfg.train.steps
        dataset = self.train_dataset
        sampler = self.task.batch_sampler(len(dataset), start_step=start, num_steps=max(total - start, 0),
                                          rank=trainer.global_rank, world_size=trainer.world_size)
        workers = self.cfg.data.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=ResumedSampler(sampler, total),
            num_workers=workers,
            worker_init_fn=worker_init_fn if workers else None,
            persistent_workers=False,
        )
