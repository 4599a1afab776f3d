"""Split a jet file into a background bank and evaluation jets, and embed them with a frozen teacher.

The split is deterministic (a function of the file's labels, its held-out ``/split``, the label lists, the sizes and
``seed``) and disjoint.

**With the file's held-out split** (``split`` given, the default of ``evaluate``): the bank is drawn from the
background jets of ``bank_splits`` (``train``: the jets the teacher may have learnt on, which is what a bank is) and
every evaluation jet, background and signal, from ``eval_splits`` (``test``), shuffled with
``numpy.random.default_rng(seed)`` and cut at ``bank_size`` / ``max_eval_background`` / ``max_eval_per_signal``.
The two split sets must not overlap.

**Without it** (``split=None``: a separate bank file, or ``bank_split=all`` and ``eval_split=all`` on one file):

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
    bank_splits: list[str] | None = None
    eval_splits: list[str] | None = None
    #: set when the bank comes from another file than the evaluation jets (``--bank-data``)
    bank_file: str | None = None
    bank_label_names: list[str] | None = None

    def summary(self, labels: np.ndarray, bank_labels: np.ndarray | None = None) -> dict:
        def counts(index: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, int]:
            values = np.bincount(labels[index], minlength=len(names))
            return {name: int(values[i]) for i, name in enumerate(names) if values[i]}

        if self.bank_file is not None:
            method = (f"bank = background jets of {split_where(self.bank_splits, self.bank_file)}, evaluation = "
                      f"jets of {split_where(self.eval_splits, 'the data file')} (two files; seeded shuffle, cut)")
        elif self.bank_splits is None:
            method = ("seeded shuffle per label group; bank = first bank_size background jets, evaluation = the "
                      "next ones (disjoint from the bank)")
        else:
            method = (f"held-out split of the file: bank = background jets of {'+'.join(self.bank_splits)}, "
                      f"evaluation = jets of {'+'.join(self.eval_splits or [])} (seeded shuffle, then cut)")
        return {
            "method": method, "bank_splits": self.bank_splits, "eval_splits": self.eval_splits,
            "seed": self.seed, "background": self.background, "signals": self.signals,
            "bank_size_requested": self.bank_size_requested, "bank_size": int(len(self.bank_index)),
            "bank_file": self.bank_file,
            "bank_counts": counts(self.bank_index, labels if bank_labels is None else bank_labels,
                                  self.bank_label_names or self.label_names),
            "eval_counts": counts(self.eval_index, labels, self.label_names),
        }


def split_jets(labels: np.ndarray, label_names: Sequence[str], background: Sequence[str],
               signals: Sequence[str] | None, bank_size: int, max_eval_background: int, max_eval_per_signal: int,
               seed: int = 0, source: str = "data file", split: np.ndarray | None = None,
               bank_splits: Sequence[str] = ("train",), eval_splits: Sequence[str] = ("test",)) -> EvaluationSplit:
    """Choose bank and evaluation jets (see module docstring). ``signals=None``: every other label present (in
    the evaluation split)."""
    label_names = list(label_names)
    labels = np.asarray(labels)
    if split is not None:
        return _split_held_out(labels, label_names, background, signals, bank_size, max_eval_background,
                               max_eval_per_signal, seed, source, np.asarray(split), list(bank_splits),
                               list(eval_splits))
    if not background:
        raise JbotEdgeError("--background: give at least one background label (e.g. q,g)")
    counts = np.bincount(labels, minlength=len(label_names))
    n_background = int(counts[_label_ids(background, "--background", label_names, counts, source)].sum())
    n_bank = bank_size
    if n_background < 2 * bank_size:
        n_bank = n_background // 2
        log.warning("only %d background jets in %s: bank reduced from %d to %d so that as many stay for evaluation",
                    n_background, source, bank_size, n_bank)
    if n_bank < 1:
        raise JbotEdgeError(f"{source}: {n_background} background jet(s) {list(background)} are too few for a bank "
                            "and an evaluation set")
    rng = np.random.default_rng(seed)
    bank = draw_bank(labels, label_names, background, np.ones(len(labels), dtype=bool), n_bank, rng, source)
    not_bank = np.ones(len(labels), dtype=bool)
    not_bank[bank] = False
    evaluation, signals = draw_evaluation(labels, label_names, background, signals, not_bank, max_eval_background,
                                          max_eval_per_signal, rng, source)
    return EvaluationSplit(label_names=label_names, background=list(background), signals=signals,
                           bank_index=bank, eval_index=evaluation, bank_size_requested=bank_size, seed=seed)


def _label_ids(names: Sequence[str], option: str, label_names: list[str], counts: np.ndarray, where: str) -> list[int]:
    """Indices of ``names``; unknown labels or labels without jets in ``where`` are one-line errors naming
    ``option``."""
    unknown = [n for n in names if n not in label_names]
    if unknown:
        raise JbotEdgeError(f"{option}: label(s) {unknown} not in {where} (it has {label_names})")
    empty = [n for n in names if counts[label_names.index(n)] == 0]
    if empty:
        raise JbotEdgeError(f"{option}: label(s) {empty} have no jets in {where} "
                            f"(jets there: {dict(zip(label_names, counts.tolist()))})")
    return [label_names.index(n) for n in names]


def split_where(splits: Sequence[str] | None, source: str) -> str:
    return source if splits is None else f"the {'+'.join(splits)} split of {source}"


def draw_bank(labels: np.ndarray, label_names: list[str], background: Sequence[str], candidates: np.ndarray,
              bank_size: int, rng: np.random.Generator, where: str) -> np.ndarray:
    """Sorted indices of up to ``bank_size`` background jets among ``candidates`` (boolean [N]), seeded shuffle."""
    if not background:
        raise JbotEdgeError("--background: give at least one background label (e.g. q,g)")
    counts = np.bincount(labels[candidates], minlength=len(label_names))
    bkg_ids = _label_ids(background, "--background", label_names, counts, where)
    bank = rng.permutation(np.flatnonzero(np.isin(labels, bkg_ids) & candidates))[:bank_size]
    if len(bank) < bank_size:
        log.info("%d background jets in %s: the bank holds all of them (data.bank_size=%d)", len(bank), where,
                 bank_size)
    return np.sort(bank)


def draw_evaluation(labels: np.ndarray, label_names: list[str], background: Sequence[str],
                    signals: Sequence[str] | None, candidates: np.ndarray, max_eval_background: int,
                    max_eval_per_signal: int, rng: np.random.Generator, where: str) -> tuple[np.ndarray, list[str]]:
    """Sorted evaluation indices among ``candidates`` (background, then each signal; seeded shuffle, cut) and the
    signal names (``None``: every non-background label present there)."""
    counts = np.bincount(labels[candidates], minlength=len(label_names))
    bkg_ids = _label_ids(background, "--background", label_names, counts, where)
    if signals is None:
        signals = [n for i, n in enumerate(label_names) if n not in background and counts[i] > 0]
        if not signals:
            raise JbotEdgeError(f"{where} holds only background labels {list(background)}; anomaly metrics need "
                                "signal jets (choose --signals or another file)")
    overlap = sorted(set(signals) & set(background))
    if overlap:
        raise JbotEdgeError(f"--signals and --background share label(s) {overlap}")
    sig_ids = _label_ids(signals, "--signals", label_names, counts, where)
    parts = [rng.permutation(np.flatnonzero(np.isin(labels, bkg_ids) & candidates))[:max_eval_background]]
    for sid in sig_ids:
        parts.append(rng.permutation(np.flatnonzero((labels == sid) & candidates))[:max_eval_per_signal])
    return np.sort(np.concatenate(parts)), list(signals)


def _split_held_out(labels: np.ndarray, label_names: list[str], background: Sequence[str],
                    signals: Sequence[str] | None, bank_size: int, max_eval_background: int,
                    max_eval_per_signal: int, seed: int, source: str, split: np.ndarray, bank_splits: list[str],
                    eval_splits: list[str]) -> EvaluationSplit:
    from jbot_edge.data.format import split_names_to_ids

    if set(bank_splits) & set(eval_splits):
        raise JbotEdgeError(f"data.bank_split {bank_splits} and data.eval_split {eval_splits} overlap: the bank "
                            "and the evaluation jets must be disjoint")
    rng = np.random.default_rng(seed)
    bank = draw_bank(labels, label_names, background,
                     np.isin(split, split_names_to_ids(bank_splits, "data.bank_split")), bank_size, rng,
                     split_where(bank_splits, source))
    evaluation, signals = draw_evaluation(
        labels, label_names, background, signals, np.isin(split, split_names_to_ids(eval_splits, "data.eval_split")),
        max_eval_background, max_eval_per_signal, rng, split_where(eval_splits, source))
    return EvaluationSplit(label_names=label_names, background=list(background), signals=signals,
                           bank_index=bank, eval_index=evaluation, bank_size_requested=bank_size, seed=seed,
                           bank_splits=bank_splits, eval_splits=eval_splits)


def embed_index(teacher, jet_file, index: np.ndarray, batch_size: int = 2048,
                description: str = "embedding") -> np.ndarray:
    """Teacher [CLS] embeddings [len(index), D] (float32) of the jets at sorted file ``index``, in that order."""
    index = np.asarray(index)
    if len(index) and np.any(np.diff(index) <= 0):
        raise ValueError("embed_index needs sorted, unique indices")
    features = teacher.stored_features(jet_file.particle_features)
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


def resolve_splits(bank_split: str, eval_split: str, separate_bank_file: bool,
                   ) -> tuple[list[str] | None, list[str] | None]:
    """``data.bank_split`` / ``data.eval_split`` → split name lists (None = all jets). ``auto``: train / test of
    one file, all jets of each of two different files."""
    def one(choice: str, auto: str) -> list[str] | None:
        choice = ("all" if separate_bank_file else auto) if choice == "auto" else choice
        return None if choice == "all" else [choice]

    bank, evaluation = one(bank_split, "train"), one(eval_split, "test")
    if not separate_bank_file and (bank is None) != (evaluation is None):
        raise JbotEdgeError(f"data.bank_split={bank_split} and data.eval_split={eval_split} overlap on one file; "
                            "choose two different splits (default train/test), or all for both")
    return bank, evaluation


def choose_jets(data, jet_file, bank_file, source: str, bank_source: str) -> EvaluationSplit:
    """The evaluation split for ``evaluate``'s data settings ``data``: from the held-out splits of one file, or
    a bank from ``bank_file`` and evaluation jets from ``jet_file`` when they differ (see module docstring)."""
    separate = bank_file is not jet_file
    bank_splits, eval_splits = resolve_splits(data.bank_split, data.eval_split, separate)
    labels = jet_file.labels()
    if not separate:
        split = None if bank_splits is None else jet_file.splits()
        return split_jets(labels, jet_file.label_names, data.background, data.signals, data.bank_size,
                          data.max_eval_background, data.max_eval_per_signal, seed=data.split_seed, source=source,
                          split=split, bank_splits=bank_splits or (), eval_splits=eval_splits or ())
    rng = np.random.default_rng(data.split_seed)

    def candidates(f, splits: list[str] | None) -> np.ndarray:
        return f.selection(splits=splits)

    bank = draw_bank(bank_file.labels(), bank_file.label_names, data.background,
                     candidates(bank_file, bank_splits), data.bank_size, rng, split_where(bank_splits, bank_source))
    evaluation, signals = draw_evaluation(labels, jet_file.label_names, data.background, data.signals,
                                          candidates(jet_file, eval_splits), data.max_eval_background,
                                          data.max_eval_per_signal, rng, split_where(eval_splits, source))
    return EvaluationSplit(label_names=jet_file.label_names, background=list(data.background), signals=signals,
                           bank_index=bank, eval_index=evaluation, bank_size_requested=data.bank_size,
                           seed=data.split_seed, bank_splits=bank_splits, eval_splits=eval_splits,
                           bank_file=bank_source, bank_label_names=bank_file.label_names)
