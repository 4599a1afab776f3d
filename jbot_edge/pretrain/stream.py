"""Deterministic, resumable, shardable streaming of training batches from a canonical jet file.

Files may hold 10^7 jets, so nothing loads a whole file. The plan for one rank and one epoch is a pure function of
``(seed, epoch, rank)``:

0. only the jets of the training split(s) (``splits``, default ``train``: see the file's ``/split``) that pass the
   label filter are ever turned into model inputs;
1. the file is cut into blocks of ``block_jets`` consecutive jets (chunk-aligned reads); rank r of W owns blocks
   ``r, r+W, r+2W, ...`` (DistributedSampler-equivalent sharding: disjoint, together covering the file);
2. each epoch visits the rank's blocks in a seeded random order; the jets passing the label filter, in that order,
   are cut into windows of ``shuffle_buffer_jets`` (a multiple of the batch size) and shuffled within each window
   (the shuffle buffer);
3. batch b of the epoch is jets ``[b·B, (b+1)·B)`` of that list. Every rank runs the same number of batches per
   epoch (the minimum over ranks), so DDP processes stay in step.

Because batch b is a pure function of ``(epoch, b)``, resuming needs only the position — no buffer contents are
checkpointed. A background thread reads and prepares the next window while the current one trains.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jbot_edge.data.preprocessing import InputSpec, build_inputs
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError


@dataclass
class StreamPosition:
    epoch: int
    batch: int


class JetStream:
    def __init__(self, path: str | Path, spec: InputSpec, batch_size: int, labels: Sequence[str] | None,
                 seed: int, rank: int = 0, world_size: int = 1, block_jets: int = 4096,
                 shuffle_buffer_jets: int = 65536, splits: Sequence[str] | None = ("train",)):
        self.path = Path(path)
        self.spec = spec
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.block_jets = int(block_jets)
        self.splits = None if splits is None else list(splits)
        with JetFile(self.path) as f:
            spec.check_file(f)
            all_labels = f.labels()
            self.label_names = f.label_names
            keep = f.selection(labels, self.splits, "--train-labels")
            split_counts = f.split_counts()
        self.n_jets_file = len(all_labels)
        self._labels = all_labels
        self._order_cache: tuple[int, np.ndarray] | None = None
        if world_size > 1:
            # Small files: shrink blocks so that every rank owns several (sharding is by block).
            self.block_jets = max(1, min(self.block_jets, -(-self.n_jets_file // (4 * world_size))))
        n_blocks = -(-self.n_jets_file // self.block_jets)
        self._selected = [np.flatnonzero(keep[b * self.block_jets:(b + 1) * self.block_jets]) + b * self.block_jets
                          for b in range(n_blocks)]
        self.counts = {name: int(np.sum(all_labels[keep] == i)) for i, name in enumerate(self.label_names)
                       if np.any(all_labels[keep] == i)}
        self.n_selected = int(keep.sum())
        if self.n_selected == 0:
            where = "" if self.splits is None else f" of the {'+'.join(self.splits)} split"
            raise JbotEdgeError(f"--train-labels {list(labels or self.label_names)}: no jets{where} in {self.path} "
                                f"pass the label filter (jets per split: {split_counts})")
        per_rank = [sum(len(self._selected[b]) for b in range(r, n_blocks, world_size)) for r in range(world_size)]
        self.batches_per_epoch = min(per_rank) // self.batch_size
        if self.batches_per_epoch == 0:
            raise JbotEdgeError(
                f"{self.path}: {self.n_selected} training jets give process {per_rank.index(min(per_rank))} of "
                f"{world_size} fewer than one batch of {self.batch_size}; lower optim.batch_size or use more jets")
        self._rank_blocks = np.arange(rank, n_blocks, world_size)
        self.window_jets = max(1, -(-int(shuffle_buffer_jets) // self.batch_size)) * self.batch_size

    # -- the plan ------------------------------------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> np.ndarray:
        """Global jet indices of this rank's epoch, in training order (length batches_per_epoch · B)."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        blocks = rng.permutation(self._rank_blocks)
        order = np.concatenate([self._selected[b] for b in blocks])
        for lo in range(0, len(order), self.window_jets):
            order[lo:lo + self.window_jets] = rng.permutation(order[lo:lo + self.window_jets])
        return order[: self.batches_per_epoch * self.batch_size]

    def batch_labels(self, position: StreamPosition) -> np.ndarray:
        """File label ids of the jets of batch ``position`` (supervised objectives; a pure function of the plan)."""
        if self._order_cache is None or self._order_cache[0] != position.epoch:
            self._order_cache = (position.epoch, self.epoch_order(position.epoch))
        lo = position.batch * self.batch_size
        return self._labels[self._order_cache[1][lo:lo + self.batch_size]]

    def _load_window(self, f: JetFile, indices: np.ndarray, cache: dict[int, tuple[np.ndarray, np.ndarray]],
                     keep: set[int]):
        blocks = np.unique(indices // self.block_jets)
        for b in blocks:
            if int(b) not in cache:
                # Only the block's selected jets (label filter and training split) become model inputs.
                lo = int(b) * self.block_jets
                batch = f.read(slice(lo, min(lo + self.block_jets, self.n_jets_file)),
                               particle_features=self.spec.stored_features(), jet_features=[])
                cache[int(b)] = build_inputs(batch.select(self._selected[int(b)] - lo), self.spec)
        offsets = np.cumsum([0] + [cache[int(b)][0].shape[0] for b in blocks])[:-1]
        x_all = np.concatenate([cache[int(b)][0] for b in blocks])
        m_all = np.concatenate([cache[int(b)][1] for b in blocks])
        block_of = indices // self.block_jets
        local = np.empty(len(indices), dtype=np.int64)
        for i, b in enumerate(blocks):
            here = block_of == b
            local[here] = offsets[i] + np.searchsorted(self._selected[int(b)], indices[here])
        # Consecutive windows share at most the block on their boundary: keep only what the next one needs.
        for b in list(cache):
            if b not in keep:
                del cache[b]
        return x_all[local], m_all[local]

    def _windows(self, start: StreamPosition, stop_event: threading.Event) -> Iterator[tuple]:
        """(epoch, first batch index, x, mask) for each window from ``start`` on, forever."""
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        batches_per_window = self.window_jets // self.batch_size
        with JetFile(self.path) as f:
            epoch, batch = start.epoch, start.batch
            while not stop_event.is_set():
                order = self.epoch_order(epoch)
                w = batch // batches_per_window
                while w * batches_per_window < self.batches_per_epoch and not stop_event.is_set():
                    lo, hi = w * self.window_jets, (w + 1) * self.window_jets
                    keep = set(np.unique(order[hi:hi + self.window_jets] // self.block_jets).tolist())
                    x, m = self._load_window(f, order[lo:hi], cache, keep)
                    yield epoch, w * batches_per_window, x, m
                    w += 1
                epoch, batch = epoch + 1, 0

    def batches(self, start: StreamPosition, device: torch.device,
                prefetch: int = 2) -> Iterator[tuple[StreamPosition, torch.Tensor, torch.Tensor]]:
        """Yield ``(position, x [B, P, F], mask [B, P])`` on ``device`` from ``start`` on, forever."""
        q: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for item in self._windows(start, stop):
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:  # handed to the consumer, which re-raises it in the training thread
                q.put(exc)

        thread = threading.Thread(target=produce, name="jet-stream", daemon=True)
        thread.start()
        pin = device.type == "cuda"
        try:
            first = True
            while True:
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                epoch, first_batch, x, m = item
                xt, mt = torch.from_numpy(x), torch.from_numpy(m)
                if pin:
                    xt, mt = xt.pin_memory(), mt.pin_memory()
                xt, mt = xt.to(device, non_blocking=pin), mt.to(device, non_blocking=pin)
                n_batches = x.shape[0] // self.batch_size
                skip = start.batch - first_batch if first else 0
                first = False
                for i in range(skip, n_batches):
                    sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                    yield StreamPosition(epoch, first_batch + i), xt[sl], mt[sl]
        finally:
            stop.set()
            thread.join(timeout=5)
