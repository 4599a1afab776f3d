"""Readers for the public jet formats users already have, writing the canonical format.

One module per format (each cites where its schema comes from):

* :mod:`.jetnet` — JetNet HDF5 (one class per file)
* :mod:`.toptagging` — Top Tagging reference dataset (pandas HDF5; extra ``toptagging``)
* :mod:`.jetclass` — JetClass ROOT (uproot; extra ``root``)
* :mod:`.adc2021` — CMS ADC 2021 event-level object sets
* :mod:`.cms_nanoaod` — CMS Open Data NanoAOD/PFNano: AK8 jets with their PF candidates (uproot; extra ``root``)

:func:`convert_files` checks every source before writing, streams them chunk by chunk and interleaves the sources
chunk-wise (round robin), so that a contiguous slice of a merged multi-class file already holds every class.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jbot_edge.data.converters.adc2021 import ADC2021Converter
from jbot_edge.data.converters.cms_nanoaod import CMSNanoAODConverter
from jbot_edge.data.converters.common import Converter, SourceFile, assign_labels
from jbot_edge.data.converters.jetclass import JetClassConverter
from jbot_edge.data.converters.jetnet import JetNetConverter
from jbot_edge.data.converters.toptagging import TopTaggingConverter
from jbot_edge.data.format import DEFAULT_SPLIT, JetBatch, JetFileWriter, SplitSpec
from jbot_edge.errors import JbotEdgeError

CONVERTERS: dict[str, type[Converter]] = {
    c.name: c for c in (JetNetConverter, TopTaggingConverter, JetClassConverter, ADC2021Converter,
                        CMSNanoAODConverter)
}
FORMATS = tuple(CONVERTERS)


def get_converter(name: str) -> Converter:
    try:
        return CONVERTERS[name]()
    except KeyError:
        raise JbotEdgeError(f"--from: unknown format {name!r}; expected one of {', '.join(FORMATS)}") from None


def inspect_sources(converter: Converter, paths: Sequence[str | os.PathLike[str]],
                    labels: Sequence[str] = ()) -> list[SourceFile]:
    """Check every source (existence, keys, shapes) before anything is written."""
    if not paths:
        raise JbotEdgeError("convert: no source files given")
    for raw in paths:
        if not Path(raw).is_file():
            raise JbotEdgeError(f"{converter.name} file {raw} does not exist")
    per_file = assign_labels(converter, paths, labels)
    sources = []
    for raw, label in zip(paths, per_file):
        path = Path(raw)
        source = converter.inspect(path)
        source.label = label
        sources.append(source)
    return sources


def _round_robin(iterators: list[Iterator[JetBatch]]) -> Iterator[JetBatch]:
    active = list(iterators)
    while active:
        for it in list(active):
            try:
                yield next(it)
            except StopIteration:
                active.remove(it)


def convert_files(
    fmt: str,
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    labels: Sequence[str] = (),
    n_particles: int | None = None,
    chunk_size: int = 4096,
    max_jets: int | None = None,
    compression: str | None = "gzip",
    options: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    split_spec: SplitSpec = DEFAULT_SPLIT,
) -> dict[str, Any]:
    """Convert ``paths`` (all of format ``fmt``) into one canonical file ``out``; return a summary dict.

    ``n_particles`` defaults to the widest source; ``max_jets`` caps the jets read per source; ``options`` is
    recorded verbatim in the provenance (the command passes its resolved config). ``on_progress(n, total)`` is
    called after each written chunk of ``n`` jets (``total``: jets expected over all sources). ``split_spec`` assigns
    the held-out split by position in ``out`` (the interleaving is deterministic, so it is stable across runs).
    """
    converter = get_converter(fmt)
    if chunk_size < 1:
        raise JbotEdgeError(f"chunk_size must be ≥ 1, got {chunk_size}")
    if n_particles is not None and n_particles < 1:
        raise JbotEdgeError(f"--n-particles must be ≥ 1, got {n_particles}")
    if max_jets is not None and max_jets < 1:
        raise JbotEdgeError(f"--max-jets must be ≥ 1, got {max_jets}")
    sources = inspect_sources(converter, paths, labels)
    out = Path(out)
    for source in sources:
        if source.path.resolve() == out.resolve():
            raise JbotEdgeError(f"--out {out} is also a source file; choose another output path")
    width = n_particles or max(s.n_particles for s in sources)
    label_names = converter.label_names(sources)
    provenance = {
        "source_format": converter.name,
        "source_reference": converter.reference,
        "source_files": [str(s.path.resolve()) for s in sources],
        "source_labels": [s.label for s in sources] if not converter.labels_in_file else None,
        "source_n_particles": [s.n_particles for s in sources],
        "conversion": dict(options or {}, n_particles=width, max_jets=max_jets),
        **converter.provenance_extra,
    }
    counts = [0] * len(sources)
    expected = total_jets(sources, max_jets)

    def counted(i: int, source: SourceFile) -> Iterator[JetBatch]:
        for batch in converter.iter_batches(source, label_names, width, chunk_size, max_jets):
            counts[i] += len(batch)
            yield batch

    with JetFileWriter(out, n_particles=width, particle_features=converter.particle_features,
                       jet_features=converter.jet_features, label_names=label_names,
                       source=f"convert:{converter.name}", provenance=provenance,
                       compression=compression, split_spec=split_spec) as writer:
        for batch in _round_robin([counted(i, s) for i, s in enumerate(sources)]):
            writer.append(batch)
            if on_progress is not None:
                on_progress(len(batch), expected)
    from jbot_edge.data.reader import JetFile

    with JetFile(out) as written:
        per_label = written.counts_per_label()
        per_split = written.split_counts()
    return {
        "out": str(out),
        "format": converter.name,
        "n_jets": sum(counts),
        "n_particles": width,
        "label_names": label_names,
        "counts": per_label,
        "split_counts": per_split,
        "particle_features": list(converter.particle_features),
        "jet_features": list(converter.jet_features),
        "sources": [{"path": str(s.path), "label": s.label, "n_jets_read": c, "n_jets_in_file": s.n_jets,
                     "n_particles": s.n_particles, **s.info} for s, c in zip(sources, counts)],
    }


def total_jets(sources: Sequence[SourceFile], max_jets: int | None) -> int:
    return sum(s.n_jets if max_jets is None else min(s.n_jets, max_jets) for s in sources)


__all__ = ["CONVERTERS", "FORMATS", "Converter", "SourceFile", "convert_files", "get_converter", "inspect_sources",
           "total_jets"]
