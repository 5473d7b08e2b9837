"""Converter-made models of the int8 ops beyond the MLPerf Tiny four (issue 9): SOFTMAX,
LOGISTIC, TANH, HARD_SWISH, MEAN, MUL (two inputs, each its own scale, same shape and
broadcast), CONCATENATION of differently-quantized inputs, PAD with a nonzero zero point,
RESHAPE, and QUANTIZE/DEQUANTIZE (float input and output around an int8 model).

Small Keras models at realistic shapes, trained briefly on the smooth inputs of
tests/converter_zoo.py and converted with tensorflow-cpu's TFLiteConverter (full integer, a
representative dataset of smooth inputs):

- ``senet``: a MobileNetV3-style image block on 32x32x3 -> 10 classes: ZeroPadding2D on the
  [0, 1] image (int8 zero point -128: PAD writes the zero point), conv, HARD_SWISH, depthwise,
  squeeze-and-excite (MEAN keepdims, RESHAPE, dense, LOGISTIC, broadcast MUL), two branches
  (ReLU conv, TANH conv) CONCATENATED with their own scales, MEAN, dense, SOFTMAX;
- ``gated``: a WaveNet-style gated keyword spotter on 49x10x1 -> 12 classes: conv,
  ``tanh(conv) * sigmoid(conv)`` (MUL of two same-shape tensors of different scales), 1x1
  conv, residual ADD, RESHAPE to frames x features, a per-frame dense, MEAN over time (one
  axis of a 3-D tensor), dense, SOFTMAX.

Files: ``{model}_int8.tflite`` (int8 input and output) and ``{model}_fio.tflite`` (the same
network, float32 input and output: a QUANTIZE in front, a DEQUANTIZE at the end). Cached like
tests/converter_zoo.py (``$PEMESH_MODEL_CACHE``, one folder per hash of this file and the
TensorFlow version). ``python -m tests.op_zoo`` fills the cache.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from tests import converter_zoo as cz
from tests import model_cache

MODELS = ("senet", "gated")
KINDS = ("int8", "fio")
#: the converter_zoo input family of each model (smooth images / keyword features)
INPUTS = {"senet": "resnet8", "gated": "dscnn"}
N_CLASSES = {"senet": 10, "gated": 12}
SEEDS = {"senet": 31, "gated": 32}
N_TRAIN = 256


def source_hash() -> str:
    return model_cache.source_hash(__file__, "tensorflow-cpu", "ops-")


def cache_dir() -> Path:
    return cz.cache_dir().parent / source_hash()


def smooth_inputs(model: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` smooth float32 inputs of ``model`` (converter_zoo's images / keyword features)."""
    return cz.smooth_inputs(INPUTS[model], n, seed=seed)


def _senet(batch=None):
    import keras
    from keras import layers as L

    x0 = keras.Input((32, 32, 3), batch_size=batch)
    x = L.ZeroPadding2D(1)(x0)
    x = L.Conv2D(16, 3, strides=2, kernel_initializer="he_normal")(x)
    x = L.Activation("hard_swish")(cz._bn()(x))
    x = L.DepthwiseConv2D(3, padding="same", depthwise_initializer="he_normal")(x)
    x = L.ReLU()(cz._bn()(x))
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Reshape((16,))(s)
    s = L.Dense(4, activation="relu")(s)
    s = L.Dense(16, activation="sigmoid")(s)
    s = L.Reshape((1, 1, 16))(s)
    x = L.Multiply()([x, s])
    a = L.ReLU()(cz._bn()(L.Conv2D(16, 1, kernel_initializer="he_normal")(x)))
    b = L.Activation("tanh")(cz._bn()(L.Conv2D(8, 3, padding="same",
                                                kernel_initializer="he_normal")(x)))
    x = L.Concatenate()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10, name="logits")(x)
    return keras.Model(x0, L.Softmax()(x))


def _gated(batch=None):
    import keras
    from keras import layers as L

    x0 = keras.Input((49, 10, 1), batch_size=batch)
    x = L.Conv2D(32, (10, 4), strides=(2, 2), padding="same", kernel_initializer="he_normal")(x0)
    x = L.ReLU()(cz._bn()(x))
    f = L.Activation("tanh")(cz._bn()(L.Conv2D(32, 3, padding="same",
                                                kernel_initializer="he_normal")(x)))
    g = L.Activation("sigmoid")(cz._bn()(L.Conv2D(32, 3, padding="same",
                                                   kernel_initializer="he_normal")(x)))
    y = L.Multiply()([f, g])
    y = cz._bn()(L.Conv2D(32, 1, kernel_initializer="he_normal")(y))
    x = L.ReLU()(L.Add()([x, y]))
    x = L.Reshape((25, 5 * 32))(x)                  # frames x features
    x = L.Dense(32, activation="relu")(x)           # per frame
    x = L.GlobalAveragePooling1D()(x)               # MEAN over time
    x = L.Dense(12, name="logits")(x)
    return keras.Model(x0, L.Softmax()(x))


_BUILDERS = {"senet": _senet, "gated": _gated}


def train(model: str):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEEDS[model])
    tf.config.experimental.enable_op_determinism()
    net = _BUILDERS[model](batch=1)
    r = np.random.default_rng(SEEDS[model])
    y = r.integers(0, N_CLASSES[model], N_TRAIN)
    x = cz.smooth_inputs(INPUTS[model], N_TRAIN, seed=SEEDS[model] + 100, labels=y)
    net.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    net.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=True, steps_per_epoch=N_TRAIN)
    return net


def convert(net, model: str, kind: str) -> bytes:
    """Full integer with a representative dataset of smooth inputs; ``int8``: int8 input and
    output, ``fio``: float32 input and output (the converter's QUANTIZE/DEQUANTIZE)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(net)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = smooth_inputs(model, cz.N_CALIBRATION, seed=SEEDS[model] + 200)

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if kind == "int8":
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    else:
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    return conv.convert()


def generate(model: str, folder: Path | None = None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    net = train(model)
    for kind in KINDS:
        cz._write(folder / f"{model}_{kind}.tflite", convert(net, model, kind))
    (folder / f"{model}.done").write_text("ok\n")


def path(name: str) -> Path:
    """The cached file ``name`` (e.g. ``"senet_int8.tflite"``), generated if missing."""
    return model_cache.cached_path(cache_dir(), name, MODELS, generate)


def main(argv: list[str]) -> int:
    return model_cache.fill(argv, MODELS, path, cache_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
