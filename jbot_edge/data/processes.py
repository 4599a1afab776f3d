"""The process catalogue of ``jbot-edge generate``: Pythia 8 settings and truth labelling per jet class.

Class names follow JetNet (``q``, ``g``, ``w``, ``z``, ``t``) plus ``h`` (H→bb̄). Jets of one class come from one
*stream* of Pythia events: ``q`` and ``g`` share the QCD stream (``HardQCD:all``) and are told apart by the flavour
of the hard-process parton the jet is matched to; every other class has its own stream in which a heavy resonance
decays hadronically and the jet is kept only when it is matched to that resonance (see
:mod:`jbot_edge.data.generator` for the matching rules).

The recipes were checked with pythia8mc 8.317 (``/work/shared/reference/method-facts.md``):

* ``w``/``z``: W/Z + parton (``WeakBosonAndParton``), because inclusive W/Z production cannot take a pT-hat cut;
  ``WeakZ0:gmZmode = 2`` keeps the pure Z (no γ*).
* ``t``: tt̄ with both W forced to quarks, so each top may give a jet.
* ``h``: H + parton through the top loop (``HiggsSM:*(l:t)``; ``HiggsSM:all`` has no pT-hat cut), H→bb̄ forced.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Quarks a W/Z may decay to (top is too heavy); used to force hadronic decays.
_HADRONIC = "1 2 3 4 5"


@dataclass(frozen=True)
class Stream:
    """One kind of Pythia event and the jet classes it can label."""

    name: str
    labels: tuple[str, ...]
    pythia_settings: tuple[str, ...]
    #: PDG id of the resonance whose decay defines the label (None for QCD).
    resonance_id: int | None = None


STREAMS: dict[str, Stream] = {
    "qcd": Stream("qcd", ("q", "g"), ("HardQCD:all = on",)),
    "w": Stream(
        "w", ("w",),
        ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
         "24:onMode = off", f"24:onIfAny = {_HADRONIC}"),
        resonance_id=24,
    ),
    "z": Stream(
        "z", ("z",),
        ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on", "WeakZ0:gmZmode = 2",
         "23:onMode = off", f"23:onIfAny = {_HADRONIC}"),
        resonance_id=23,
    ),
    "t": Stream(
        "t", ("t",),
        ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", f"24:onIfAny = {_HADRONIC}"),
        resonance_id=6,
    ),
    "h": Stream(
        "h", ("h",),
        ("HiggsSM:gg2Hg(l:t) = on", "HiggsSM:qg2Hq(l:t) = on", "HiggsSM:qqbar2Hg(l:t) = on",
         "25:onMode = off", "25:onIfMatch = 5 -5"),
        resonance_id=25,
    ),
}

#: Every process name ``--processes`` accepts, in the canonical label order.
PROCESS_NAMES: tuple[str, ...] = ("q", "g", "w", "z", "t", "h")


def stream_of(process: str) -> Stream:
    """The event stream that produces jets of class ``process``."""
    for stream in STREAMS.values():
        if process in stream.labels:
            return stream
    raise KeyError(process)


def streams_for(processes: list[str]) -> list[Stream]:
    """Streams needed for ``processes``, each once, in the order their first class appears."""
    out: list[Stream] = []
    for process in processes:
        stream = stream_of(process)
        if stream not in out:
            out.append(stream)
    return out
