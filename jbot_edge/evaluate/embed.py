"""Split a jet file into a background bank and evaluation jets, and embed them with a frozen teacher.

The split is deterministic (a function of the file's labels, the label lists, the sizes and ``seed``) and disjoint:

1. background jets (labels in ``background``) are shuffled with ``numpy.random.default_rng(seed)``; the first
   ``bank_size`` form the **bank** the scorers are fitted on, the next ``max_eval_background`` are evaluation
   background. If the file has fewer than ``2 × bank_size`` background jets, the bank is reduced to half of them
   (logged, and recorded as ``bank_size`` next to ``bank_size_requested`` in ``evaluate.json``), so that the
   evaluation never runs on the jets the scorers memorised.
2. each signal label's jets are shuffled with the same generator and the first ``max_eval_per_signal`` kept.

Embedding streams the file in contiguous blocks in file order and runs the teacher only on the selected jets, so a
10^7-jet file is never loaded whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger, progress_bar

log = get_logger(__name__)


@dataclass
class EvaluationSplit:
    """Global (file) indices of bank and evaluation jets, both sorted, plus the label bookkeeping."""

    label_names: list[str]
    background: list[str]
    signals: list[str]
    bank_index: np.ndarray
    eval_index: np.ndarray
    bank_size_requested: int
    seed: int

    def summary(self, labels: np.ndarray) -> dict:
        def counts(index: np.ndarray) -> dict[str, int]:
            values = np.bincount(labels[index], minlength=len(self.label_names))
            return {name: int(values[i]) for i, name in enumerate(self.label_names) if values[i]}

        return {
            "method": "seeded shuffle per label group; bank = first bank_size background jets, evaluation = the "
                      "next ones (disjoint from the bank)",
            "seed": self.seed, "background": self.background, "signals": self.signals,
            "bank_size_requested": self.bank_size_requested, "bank_size": int(len(self.bank_index)),
            "bank_counts": counts(self.bank_index), "eval_counts": counts(self.eval_index),
        }


def split_jets(labels: np.ndarray, label_names: Sequence[str], background: Sequence[str],
               signals: Sequence[str] | None, bank_size: int, max_eval_background: int, max_eval_per_signal: int,
               seed: int = 0, source: str = "data file") -> EvaluationSplit:
    """Choose bank and evaluation jets (see module docstring). ``signals=None``: every other label present."""
    label_names = list(label_names)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(label_names))

    def indices_of(names: Sequence[str], option: str) -> list[int]:
        unknown = [n for n in names if n not in label_names]
        if unknown:
            raise JbotEdgeError(f"{option}: label(s) {unknown} not in {source} (it has {label_names})")
        empty = [n for n in names if counts[label_names.index(n)] == 0]
        if empty:
            raise JbotEdgeError(f"{option}: label(s) {empty} have no jets in {source} "
                                f"(counts: {dict(zip(label_names, counts.tolist()))})")
        return [label_names.index(n) for n in names]

    if not background:
        raise JbotEdgeError("--background: give at least one background label (e.g. q,g)")
    bkg_ids = indices_of(background, "--background")
    if signals is None:
        signals = [n for i, n in enumerate(label_names) if n not in background and counts[i] > 0]
        if not signals:
            raise JbotEdgeError(f"{source} holds only background labels {list(background)}; anomaly metrics need "
                                "signal jets (choose --signals or another file)")
    overlap = sorted(set(signals) & set(background))
    if overlap:
        raise JbotEdgeError(f"--signals and --background share label(s) {overlap}")
    sig_ids = indices_of(signals, "--signals")

    rng = np.random.default_rng(seed)
    bkg_all = rng.permutation(np.flatnonzero(np.isin(labels, bkg_ids)))
    n_bank = bank_size
    if len(bkg_all) < 2 * bank_size:
        n_bank = len(bkg_all) // 2
        log.warning("only %d background jets in %s: bank reduced from %d to %d so that as many stay for evaluation",
                    len(bkg_all), source, bank_size, n_bank)
    if n_bank < 1:
        raise JbotEdgeError(f"{source}: {len(bkg_all)} background jet(s) {list(background)} are too few for a bank "
                            "and an evaluation set")
    bank = bkg_all[:n_bank]
    evaluation = [bkg_all[n_bank:n_bank + max_eval_background]]
    for sid in sig_ids:
        evaluation.append(rng.permutation(np.flatnonzero(labels == sid))[:max_eval_per_signal])
    return EvaluationSplit(label_names=label_names, background=list(background), signals=list(signals),
                           bank_index=np.sort(bank), eval_index=np.sort(np.concatenate(evaluation)),
                           bank_size_requested=bank_size, seed=seed)


def embed_index(teacher, jet_file, index: np.ndarray, batch_size: int = 2048,
                description: str = "embedding") -> np.ndarray:
    """Teacher [CLS] embeddings [len(index), D] (float32) of the jets at sorted file ``index``, in that order."""
    index = np.asarray(index)
    if len(index) and np.any(np.diff(index) <= 0):
        raise ValueError("embed_index needs sorted, unique indices")
    features = teacher.input_spec.stored_features()
    out = np.empty((len(index), teacher.embed_dim), dtype=np.float32)
    block = max(batch_size, 16384)
    done = 0
    with progress_bar() as progress:
        task = progress.add_task(description, total=len(index))
        for lo in range(0, len(jet_file), block):
            hi = min(lo + block, len(jet_file))
            a, b = np.searchsorted(index, [lo, hi])
            if a == b:
                continue
            chunk = jet_file.read(slice(lo, hi), particle_features=features, jet_features=[])
            out[a:b] = teacher.embed(chunk.select(index[a:b] - lo), batch_size=batch_size)
            done += b - a
            progress.update(task, completed=done)
    return out
