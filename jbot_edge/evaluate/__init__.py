"""Evaluate a frozen jBOT teacher: anomaly scores, metrics, trigger view, clustering, probes, fine-tuning.

Modules (each documents its part of the output schema):

* :mod:`~jbot_edge.evaluate.embed`       deterministic bank/evaluation split, streaming teacher embeddings
* :mod:`~jbot_edge.evaluate.scores`      scorers (knn, cosine, mahalanobis, gmm, kmeans) fitted on a background bank
* :mod:`~jbot_edge.evaluate.score_head`  :class:`ScoreHead`, the scorer saved as RUN_DIR/score_head.{npz,json} for qat
* :mod:`~jbot_edge.evaluate.metrics`     AUC, TPR at fixed FPR, 1/ε_B at fixed ε_S, uncertainties, trigger view
* :mod:`~jbot_edge.evaluate.clustering`  k-means NMI/ARI/purity, PCA and t-SNE views
* :mod:`~jbot_edge.evaluate.probes`      logistic-regression and kNN-classifier probes on the frozen [CLS]
* :mod:`~jbot_edge.evaluate.finetune`    fine-tuning the backbone vs the same model from scratch
* :mod:`~jbot_edge.evaluate.plots`       PNG figures
* :mod:`~jbot_edge.evaluate.config`      :class:`EvaluateConfig` (defaults: configs/evaluate/default.yaml)
* :mod:`~jbot_edge.evaluate.pipeline`    ``jbot-edge evaluate`` end to end; evaluate.json schema
"""
