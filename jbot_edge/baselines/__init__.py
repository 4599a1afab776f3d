"""Baseline methods that jBOT is compared with, trained and exported through the same pipeline.

* ``jetclr``  — contrastive (NT-Xent) jet representations, Dillon et al. arXiv 2108.04253 (:mod:`.jetclr`)
* ``vae`` / ``oe-vae`` — variational autoencoder on constituents, optionally with outlier exposure and a DisCo
  mass-decorrelation penalty, Cheng et al. arXiv 2007.01850 (:mod:`.vae`)
* ``simclr`` / ``vicreg`` — low-dimensional contrastive embeddings for anomaly detection, Metzger et al.
  arXiv 2502.15926 (:mod:`.contrastive`)

Every method writes the jBOT run layout (``teacher.pt`` with ``method=<name>``, ``summary.json``, ``config.yaml``,
``metrics.jsonl``, ``checkpoints/last.pt``; see :mod:`.train`), so ``evaluate``, ``qat`` and ``synth`` work
unchanged. Losses live in :mod:`.loss`, one module each.
"""
