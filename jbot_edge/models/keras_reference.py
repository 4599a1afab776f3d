"""The authors' jBOT Keras model, rebuilt in Keras for cross-checks (optional: ``pip install 'jbot-edge[keras]'``).

A transcription of ``build_backbone`` / ``build_mlp`` in github.com/hftsoi/jbot ``utils_model.py`` (commit f2e3b54):
same layer classes and attribute names, so Keras' ``load_weights`` reads the published ``*.weights.h5`` files and
``save_weights`` writes that layout. jbot-edge itself never needs this module (the importer,
:mod:`jbot_edge.models.keras_weights`, reads the files with h5py); the cross-check test and
``benchmarks/keras_published.py`` compare the imported teacher with it.
"""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def _keras() -> tuple[Any, Any, type, type]:
    """Import TensorFlow + Keras 3 and define the two custom layers (their class names fix the weight paths)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    class AddClsToken(keras.layers.Layer):
        def __init__(self, d_model: int, **kw: Any):
            super().__init__(**kw)
            self.cls = self.add_weight(name="cls_token", shape=(1, 1, d_model), initializer="zeros")

        def call(self, x):
            return tf.concat([tf.tile(self.cls, [tf.shape(x)[0], 1, 1]), x], axis=1)

    class TransformerBlock(keras.layers.Layer):
        def __init__(self, d_model: int, n_heads: int, **kw: Any):
            super().__init__(**kw)
            self.mha = keras.layers.MultiHeadAttention(n_heads, d_model // n_heads)
            self.ln1 = keras.layers.LayerNormalization(epsilon=1e-6)
            self.ln2 = keras.layers.LayerNormalization(epsilon=1e-6)
            self.ffn = keras.Sequential([keras.layers.Dense(d_model * 4, activation="gelu"),
                                         keras.layers.Dense(d_model)])
            self.drop1 = keras.layers.Dropout(0.2)
            self.drop2 = keras.layers.Dropout(0.2)

        def call(self, x):
            a = self.ln1(x + self.drop1(self.mha(x, x)))
            return self.ln2(a + self.drop2(self.ffn(a)))

    return keras, tf, AddClsToken, TransformerBlock


def keras_backbone(d_model: int, n_heads: int, n_layers: int, n_particles: int = 30):
    """``particles [N, P, 4]`` → ([CLS] [N, d], particles [N, P, d]); call with ``training=False``."""
    keras, _, add_cls_token, transformer_block = _keras()
    x_in = keras.Input((n_particles, 4), name="particles_in")
    x = keras.layers.Dense(d_model, name="token_embedding")(x_in)
    x = add_cls_token(d_model, name="prepend_cls")(x)
    for i in range(n_layers):
        x = transformer_block(d_model, n_heads, name=f"block_{i}")(x)
    return keras.Model(x_in, [x[:, 0], x[:, 1:]], name="backbone")


def keras_classifier_head(dim_in: int, n_classes: int):
    """``[CLS] [N, d]`` → class probabilities ``[N, C]``: Dense(2d, GELU) → Dense(d, GELU) → Dense(C, softmax)."""
    keras = _keras()[0]
    x_in = keras.Input((dim_in,))
    x = keras.layers.Dense(dim_in * 2, activation="gelu")(x_in)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(dim_in, activation="gelu")(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(x_in, keras.layers.Dense(n_classes, activation="softmax")(x), name="mlp")
