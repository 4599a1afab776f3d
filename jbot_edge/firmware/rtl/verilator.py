"""Cycle-accurate simulation of the generated RTL with Verilator, batched through a compiled shared library.

The library is da4ml's C++ binder (``sim/<top>_wrapper_binder.cc``: feeds one jet per clock edge into the
uniform-width wrapper and reads the output ``latency_cycles`` edges later, II = 1) linked against the Verilated
model. Reading each output exactly ``latency_cycles`` edges after its input also checks the latency that rtl.json
claims: a wrong count would pair every score with a neighbouring jet and fail the comparison.

The build is ours, not da4ml's Makefile, so that it works with Verilator 5.006 (Debian bookworm: no libverilated.a,
the runtime objects are built from the generated Makefile) and newer releases alike, keeps the CPU use to
``jobs`` processes, and compiles at ``-O0``: C++ compilation of a flattened design dominates the build (minutes at
-O for a 16-particle Deep Sets, under one at -O0), while -O0 still simulates thousands of jets per second.

Cache: ``sim/lib<wrapper>_<key>.so`` where ``key`` hashes the Verilog sources, the binder, the Verilator version
and the compiler flags; a later ``RtlSimulator`` on the same directory loads it without rebuilding. A file lock
serialises concurrent builds of one directory. Build logs: ``sim/build.log``.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from jbot_edge.atomic import atomic_path
from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.rtl.design import RtlDesign, load_rtl
from jbot_edge.firmware.rtl.tools import Tool, require_verilator, verilator_root
from jbot_edge.logs import get_logger

log = get_logger(__name__)

_CXX = os.environ.get("CXX", "g++")


class RtlSimulator:
    """``RtlSimulator(rtl_dir).predict_codes(codes [N, P, F]) -> int64 [N]`` output codes from Verilator."""

    def __init__(self, rtl_dir: str | os.PathLike[str] | RtlDesign, jobs: int = 1, opt: str = "-O0",
                 build_timeout_s: float = 1800.0):
        self.design = rtl_dir if isinstance(rtl_dir, RtlDesign) else load_rtl(rtl_dir)
        self.jobs = max(1, int(jobs))
        self.opt = opt
        self.build_timeout_s = float(build_timeout_s)
        self._lib = None
        self.library: Path | None = None
        self.build_seconds: float | None = None

    @property
    def sim_dir(self) -> Path:
        # Absolute: the build steps run in different working directories (src/, the make directory, sim/), so a
        # relative `--firmware fwrtl` would point each of them somewhere else.
        return self.design.directory.resolve() / "sim"

    def _cache_key(self, verilator: Tool) -> str:
        digest = hashlib.sha256()
        src = self.design.directory / "src"
        files = sorted(src.glob("*.v")) + sorted((src / "static").glob("*.v"))
        files.append(self.sim_dir / f"{self.design.wrapper}_binder.cc")
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        digest.update(f"{verilator.version}|{self.opt}|{_CXX}".encode())
        return digest.hexdigest()[:16]

    def build(self) -> Path:
        """Compile (or find in the cache) the simulation library; returns its path."""
        if self.library is not None:
            return self.library
        verilator = require_verilator()
        if shutil.which(_CXX) is None or shutil.which("make") is None:
            raise JbotEdgeError(f"building the Verilator simulation needs a C++ compiler ({_CXX}) and make on PATH: "
                                "apt-get install -y g++ make")
        library = self.sim_dir / f"lib{self.design.wrapper}_{self._cache_key(verilator)}.so"
        with open(self.sim_dir / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not library.is_file():
                start = time.perf_counter()
                self._compile(verilator, library)
                self.build_seconds = round(time.perf_counter() - start, 1)
                log.info("Verilator simulation built in %.0f s: %s", self.build_seconds, library.name)
        self.library = library
        return library

    def _run(self, command: list[str], cwd: Path, log_file, step: str) -> None:
        log_file.write(f"$ {' '.join(command)}\n")
        log_file.flush()
        try:
            result = subprocess.run(command, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT,
                                    timeout=self.build_timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise JbotEdgeError(f"{step} took longer than {self.build_timeout_s:.0f} s; see "
                                f"{self.sim_dir / 'build.log'}") from exc
        if result.returncode != 0:
            raise JbotEdgeError(f"{step} failed (exit {result.returncode}); see {self.sim_dir / 'build.log'}")

    def _compile(self, verilator: Tool, library: Path) -> None:
        wrapper = self.design.wrapper
        root = verilator_root(verilator)
        src = (self.design.directory / "src").resolve()
        # The Verilated model is compiled in the system temporary directory: GNU make cannot build in a directory
        # whose path holds spaces, and the firmware directory's name is the user's choice.
        work = Path(tempfile.mkdtemp(prefix="jbot-edge-verilator-"))
        cflags = f"-std=c++17 -fPIC {self.opt}"
        log.info("building the Verilator simulation of %s (%s, %d job(s)); this takes a minute or more",
                 self.design.directory, verilator.version, self.jobs)
        try:
            with open(self.sim_dir / "build.log", "w") as log_file:
                # Include paths relative to src/: Verilator expands $VAR and $(VAR) in its path options, so an
                # absolute path through a directory named like `fw$(x)` would point elsewhere.
                self._run([verilator.path, "--cc", f"{wrapper}.v", "--prefix", f"V{wrapper}", "--Mdir", str(work),
                           "-I.", "-Istatic", "-Wno-fatal", "-CFLAGS", cflags],
                          cwd=src, log_file=log_file, step="verilator (Verilog → C++)")
                self._run(["make", "-j", str(self.jobs), "-f", f"V{wrapper}.mk", f"V{wrapper}__ALL.a", "verilated.o",
                           "verilated_threads.o", f"OPT_FAST={self.opt}", f"OPT_SLOW={self.opt}",
                           f"OPT_GLOBAL={self.opt}", f"VERILATOR_ROOT={root}"],
                          cwd=work, log_file=log_file, step="compiling the Verilated model")
                with atomic_path(library) as tmp_lib:
                    self._run([_CXX, *cflags.split(), f"-I{work}", f"-I{root}/include", f"-I{root}/include/vltstd",
                               "-Wl,--no-undefined", "-pthread", "-shared", "-o", str(tmp_lib),
                               str(self.sim_dir / f"{wrapper}_binder.cc"), str(work / f"V{wrapper}__ALL.a"),
                               str(work / "verilated.o"), str(work / "verilated_threads.o")],
                              cwd=self.sim_dir, log_file=log_file, step="linking the simulation library")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _load(self):
        if self._lib is None:
            lib = ctypes.CDLL(str(self.build()))
            lib.inference.argtypes = [ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32),
                                      ctypes.c_size_t, ctypes.c_size_t]
            lib.inference.restype = None
            self._lib = lib
        return self._lib

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """Scores (float64 [N], ``code * output_lsb``) for model inputs ``x = codes * 2**-input_frac_bits``
        ``[N, P, F]``: the ``Callable[[model input], scores]`` shape of the emulation harness' other legs."""
        frac = int(self.design.description["input"]["code_frac_bits"])
        scaled = np.asarray(x, dtype=np.float64) * 2.0 ** frac
        codes = np.rint(scaled)
        if not np.array_equal(codes, scaled):
            raise JbotEdgeError(f"model inputs are not integer codes × 2**-{frac}; the RTL reads integer codes")
        return self.predict_codes(codes.astype(np.int64)).astype(np.float64) * self.design.output_lsb

    def predict_codes(self, codes: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Output codes (int64 [N]) of the simulated RTL for integer input codes ``[N, P, F]``."""
        lib = self._load()
        inputs = self.design.encode_inputs(codes)
        raw = np.empty(len(inputs), dtype=np.int32)
        for lo in range(0, len(inputs), batch_size):
            chunk = np.ascontiguousarray(inputs[lo:lo + batch_size])
            out = np.empty(len(chunk), dtype=np.int32)
            # One thread: the binder runs a fresh model per thread and the machines this runs on are shared.
            lib.inference(chunk.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                          out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), len(chunk), 1)
            raw[lo:lo + len(chunk)] = out
        return self.design.decode_outputs(raw)
