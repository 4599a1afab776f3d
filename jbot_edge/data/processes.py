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

#: Charged leptons a W/Z may decay to in the event-level streams (τ decays inside Pythia).
_LEPTONIC = "11 13 15"

#: Event-level streams of the ``l1-event`` preset (ADC2021-like object sets, :mod:`jbot_edge.data.events`): one
#: stream per process, the label is the process name, every generated event with a visible object is kept.
#: SM: ``qcd`` (HardQCD, pT-hat cut from the preset), ``w`` (W → ℓν + parton), ``z`` (Z → ℓℓ + parton, pure Z),
#: ``tt`` (inclusive tt̄). Signals: ``zprime`` (Z' → ee/μμ, m = 500 GeV, pure Z' via Zprime:gmZmode = 3),
#: ``htautau`` (gg → H → ττ, the ADC2021 hToTauTau signal), ``h4l`` (gg → H → ZZ* → 4ℓ, ℓ = e, μ: a SM stand-in
#: for the ADC2021 A → 4ℓ signal, whose A is not in Pythia's SM catalogue).
EVENT_STREAMS: dict[str, Stream] = {
    "qcd": Stream("qcd", ("qcd",), ("HardQCD:all = on",)),
    "w": Stream("w", ("w",), ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                              "24:onMode = off", f"24:onIfAny = {_LEPTONIC}")),
    "z": Stream("z", ("z",), ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                              "WeakZ0:gmZmode = 2", "23:onMode = off", f"23:onIfAny = {_LEPTONIC}")),
    "tt": Stream("tt", ("tt",), ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")),
    "zprime": Stream("zprime", ("zprime",), ("NewGaugeBoson:ffbar2gmZZprime = on", "Zprime:gmZmode = 3",
                                             "32:m0 = 500.", "32:onMode = off", "32:onIfAny = 11 13")),
    "htautau": Stream("htautau", ("htautau",), ("HiggsSM:gg2H = on", "25:onMode = off", "25:onIfMatch = 15 -15")),
    "h4l": Stream("h4l", ("h4l",), ("HiggsSM:gg2H = on", "25:onMode = off", "25:onIfMatch = 23 23",
                                    "23:onMode = off", "23:onIfAny = 11 13")),
}
EVENT_PROCESS_NAMES: tuple[str, ...] = tuple(EVENT_STREAMS)
#: Presets whose "jets" are whole events as object sets; they use :data:`EVENT_STREAMS`.
EVENT_PRESETS: tuple[str, ...] = ("l1-event",)


def catalogue(preset: str) -> dict[str, Stream]:
    """The streams a preset draws from: event-level object sets or labelled jets."""
    return EVENT_STREAMS if preset in EVENT_PRESETS else STREAMS


def process_names(preset: str) -> tuple[str, ...]:
    """The ``--processes`` names (labels) a preset accepts."""
    return EVENT_PROCESS_NAMES if preset in EVENT_PRESETS else PROCESS_NAMES


def stream_of(process: str, streams: dict[str, Stream] | None = None) -> Stream:
    """The event stream that produces jets of class ``process`` (in ``streams``, default: the jet streams)."""
    for stream in (STREAMS if streams is None else streams).values():
        if process in stream.labels:
            return stream
    raise KeyError(process)


def streams_for(processes: list[str], streams: dict[str, Stream] | None = None) -> list[Stream]:
    """Streams needed for ``processes``, each once, in the order their first class appears."""
    out: list[Stream] = []
    for process in processes:
        stream = stream_of(process, streams)
        if stream not in out:
            out.append(stream)
    return out
