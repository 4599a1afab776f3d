"""``jbot-edge import --from jbot-keras WEIGHTS.weights.h5 --out RUN_DIR``: a published model → a jbot-edge run.

Reads the jBOT authors' Keras 3 weights with h5py (no TensorFlow), infers the architecture from the shapes and
writes teacher.pt + summary.json + config.yaml (+ classifier.pt with ``--classifier``); see
:mod:`jbot_edge.pretrain.keras_import`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from jbot_edge.commands import label_list

#: ``--from`` values (checked before the heavy imports, so a typo answers at once).
SOURCE_FORMATS = ("jbot-keras",)


def register(app: typer.Typer) -> None:
    @app.command("import")
    def import_model(
        weights: Path = typer.Argument(..., help="Published backbone, e.g. qg_backbone_pretrain_32_4_2.weights.h5."),
        from_format: str = typer.Option(..., "--from", help="Source format: jbot-keras (Keras 3 .weights.h5)."),
        out: Path = typer.Option(..., "--out", help="New run directory (teacher.pt, summary.json, config.yaml)."),
        classifier: Optional[Path] = typer.Option(
            None, "--classifier", help="Classifier head of a fine-tuned backbone (*_mlp_ft_*.weights.h5)."),
        classes: Optional[str] = typer.Option(
            None, "--classes", help="Class names of the classifier outputs (default: q,g,w,z,t for 5, qg,t for 2)."),
        train_labels: Optional[str] = typer.Option(
            None, "--train-labels", help="Labels the model was trained on (default: from the published file name: "
                                         "qg_ → q,g; tqg_ → t,q,g; all_ → q,g,w,z,t)."),
        n_particles: int = typer.Option(30, "--n-particles", help="Particle slots fed to the model (JetNet: 30)."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty OUT as a whole."),
    ) -> None:
        """Import a published jBOT model (the authors' Keras weights) as a jbot-edge teacher run directory."""
        from jbot_edge.errors import JbotEdgeError

        if from_format not in SOURCE_FORMATS:
            raise JbotEdgeError(f"--from {from_format!r}: expected one of {', '.join(SOURCE_FORMATS)}")
        if not 1 <= n_particles <= 512:
            raise JbotEdgeError(f"--n-particles {n_particles}: expected 1 to 512")
        from jbot_edge.pretrain.keras_import import ImportConfig, import_keras_run

        cfg = ImportConfig(source_format=from_format, weights=str(weights),
                           classifier=None if classifier is None else str(classifier),
                           classes=label_list(classes, "--classes"),
                           train_labels=label_list(train_labels, "--train-labels"),
                           n_particles=n_particles)
        summary = import_keras_run(cfg, out, force=force)
        arch = summary["architecture"]
        extra = f", classifier over {','.join(summary['classes'])}" if summary["classes"] else ""
        typer.echo(f"{out}: d_model {arch['d_model']}, {arch['heads']} heads × {arch['key_dim']}, "
                   f"{arch['layers']} layers, {summary['parameters']['backbone']:,} parameters{extra}")
