"""jbot-edge: from unlabeled jets to level-1-trigger firmware.

Pipeline stages, each a sub-package whose artifacts are files with a documented schema:
``data`` (canonical HDF5 jets, generator, readers) → ``pretrain`` (jBOT teacher) → ``evaluate``
(anomaly scores, score head) → ``qat`` (quantized student) → ``firmware`` (QONNX, hls4ml, emulation).
"""

__version__ = "0.1.0"
