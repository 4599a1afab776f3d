"""Method name → trainer class (used by ``pretrain --method``).

The encoders the methods export are rebuilt from ``teacher.pt`` by :mod:`jbot_edge.models.registry`, which does
not import this package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jbot_edge.errors import JbotEdgeError

#: Packaged default config of each baseline method (under configs/pretrain/).
DEFAULT_CONFIGS = {"jetclr": "pretrain/jetclr.yaml", "simclr": "pretrain/simclr.yaml",
                   "vicreg": "pretrain/vicreg.yaml", "supcon": "pretrain/supcon.yaml", "vae": "pretrain/vae.yaml", "oe-vae": "pretrain/oe-vae.yaml"}
BASELINE_METHODS = tuple(DEFAULT_CONFIGS)


def method_class(method: str) -> type:
    if method in ("jetclr", "simclr", "vicreg", "supcon"):
        from jbot_edge.baselines.contrastive import ContrastiveMethod
        return ContrastiveMethod
    if method in ("vae", "oe-vae"):
        from jbot_edge.baselines.vae import VAEMethod
        return VAEMethod
    raise JbotEdgeError(f"--method {method!r}: expected one of jbot, {', '.join(BASELINE_METHODS)}")


def run_method(method: str, config_file: Any, overrides: list[str], cli_values: Mapping[str, Any],
               out_dir: Any, resume: bool = False) -> dict[str, Any]:
    """Resolve the method's config (packaged default ← --config ← CLI ← overrides) and train it."""
    from jbot_edge.baselines.train import run_baseline
    from jbot_edge.config import packaged_config, resolve_config

    cls = method_class(method)
    values = {k: v for k, v in cli_values.items() if v is not None}
    values["method"] = method
    config = resolve_config(cls.config_cls, config_file=config_file, overrides=overrides, cli_values=values,
                            default_file=packaged_config(DEFAULT_CONFIGS[method]))
    return run_baseline(cls, config, out_dir, resume=resume)


def pretrain_method(method: str, config_file: Any, overrides: list[str], cli_values: Mapping[str, Any],
                    out_dir: Any, resume: bool = False) -> dict[str, Any]:
    """Train any ``--method`` (jBOT or a baseline) from the same arguments; returns the run summary."""
    if method != "jbot":
        return run_method(method, config_file, overrides, cli_values, out_dir, resume=resume)
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.pretrain.train import PretrainConfig, run_pretrain

    cfg = resolve_config(PretrainConfig, config_file=config_file, overrides=overrides,
                         cli_values={k: v for k, v in cli_values.items() if v is not None},
                         default_file=packaged_config("pretrain/default.yaml"))
    return run_pretrain(cfg, out_dir, resume=resume)
