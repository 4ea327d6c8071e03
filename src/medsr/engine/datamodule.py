"""Training data for the engine: :class:`SRSliceDataset` (or its :class:`~medsr.data.synth.SynthMixture`) batched by
:class:`ScaleBatchSampler`.

The whole run is one Lightning epoch of ``train.steps`` batches. The sampler starts at the module's step (so a
resumed run replays exactly the batches an uninterrupted one sees) and takes this rank's shard; Lightning's own
distributed sampler replacement is turned off by the trainer (``use_distributed_sampler=False``).
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import lightning.pytorch as pl
import torch

from medsr.config import RunConfig, to_dict
from medsr.errors import InputError


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


class SRDataModule(pl.LightningDataModule):
    """Builds the train and validation datasets of ``cfg.data``; ``train_dataloader`` needs an attached trainer."""

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg

    def dataset(self, split: str, *, training: bool) -> Any:
        """The store's dataset of ``split``; for training with ``data.dataset: synth``, mixed with generated items."""
        from medsr.data.datasets import SRSliceDataset
        from medsr.data.masks import CONFIG_KEYS, parse_mask
        from medsr.data.mixture import PairMixture, parse_pair

        d = self.cfg.data
        mask = parse_mask(d.mask.type, d.mask.acceleration, d.mask.center_fraction, d.mask.grid, d.mask.file,
                          CONFIG_KEYS)
        if mask is not None and d.dataset == "synth":
            raise InputError("data.mask", "generated items (data.dataset: synth) are not undersampled yet")
        pairs = [parse_pair(p) for p in d.pairs] if training and d.pairs else [(d.target, d.ref)]
        sets = [
            SRSliceDataset(
                d.root,
                split,
                target,
                ref=ref,
                n_adjacent=d.n_adjacent,
                patch_size=d.patch_size if training else None,
                augment=d.augment and training,
                use_labels=d.use_labels,
                mask=mask,
            )
            for target, ref in pairs
        ]
        real = sets[0] if len(sets) == 1 else PairMixture(sets)
        if not training or d.dataset != "synth":
            return real
        from medsr.data.synth import SynthMixture, SynthSliceDataset

        synth = SynthSliceDataset(d.root, d.synth, split=split, n_adjacent=d.n_adjacent, patch_size=d.patch_size,
                                  use_labels=d.use_labels, length=len(real))
        return SynthMixture(real, synth, d.synth.real_fraction)

    @functools.cached_property
    def train_dataset(self) -> Any:
        return self.dataset(self.cfg.data.train_split, training=True)

    @functools.cached_property
    def val_dataset(self) -> Any:
        return self.dataset(self.cfg.data.val_split, training=False)

    @functools.cached_property
    def curriculum(self) -> Any:
        from medsr.data.scales import Curriculum

        try:
            return Curriculum.from_config(to_dict(self.cfg)["data"]["curriculum"])
        except ValueError as err:
            raise InputError("data.curriculum", str(err)) from None

    def check(self) -> None:
        """Fail early, before any process starts training, on a bad curriculum or unreadable data."""
        _ = self.curriculum
        _ = self.train_dataset, self.val_dataset

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        from medsr.data.datasets import ScaleBatchSampler, worker_init_fn

        trainer = self.trainer
        start = int(trainer.lightning_module.step)
        total = self.cfg.train.steps
        dataset = self.train_dataset
        sampler = ScaleBatchSampler(
            len(dataset),
            self.cfg.data.batch_size,
            self.curriculum,
            self.cfg.seed,
            start_step=start,
            num_steps=max(total - start, 0),
            rank=trainer.global_rank,
            world_size=trainer.world_size,
        )
        workers = self.cfg.data.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=ResumedSampler(sampler, total),
            num_workers=workers,
            worker_init_fn=worker_init_fn if workers else None,
            persistent_workers=False,
        )
