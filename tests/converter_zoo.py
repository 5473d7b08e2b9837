"""Test models made by real converters: Keras models of the four MLPerf Tiny shapes, converted
with tensorflow-cpu's TFLiteConverter (full-integer int8, dynamic-range "hybrid", float32), and
ONNX QDQ models from onnxruntime's ``quantize_static``. Generated once and cached.

The models (the MLPerf Tiny reference architectures, smaller training):

- ``resnet8``: ResNet-8 image classifier, 32x32x3 -> 10 classes (three residual stacks 16/32/64,
  AVERAGE_POOL_2D 8x8, FULLY_CONNECTED, SOFTMAX);
- ``dscnn``: DS-CNN keyword spotter, 49x10x1 -> 12 classes (conv 10x4 stride 2, four
  depthwise/pointwise pairs of 64, AVERAGE_POOL_2D 25x5, FULLY_CONNECTED, SOFTMAX);
- ``mobilenet``: MobileNetV1-0.25 visual wake words, 96x96x3 -> 2 classes (13 depthwise separable
  blocks, average pool 3x3, FULLY_CONNECTED, SOFTMAX). One depthwise channel has weights ~1e-9
  (deliberately: the converter then gives it a requantization scale ~1e-10, as in the MLPerf
  model);
- ``autoencoder``: the FC autoencoder 640 -> 128x4 -> 8 -> 128x4 -> 640 (anomaly detection).

Weights are trained for a couple of epochs on smooth synthetic data (classes told apart by their
spatial/temporal frequencies), with BatchNormalization momentum low enough that the moving
statistics are the data's: the converter folds them into realistic conv weights and biases.
Inputs are smooth (low-frequency images, sine+noise spectrogram-like features), not uniform noise.

Files (``path(name)``): ``{model}_int8.tflite`` (full integer, int8 input and output, a
representative dataset of smooth inputs), ``{model}_hybrid.tflite`` (dynamic range: int8 weights,
float activations), ``{model}_f32.tflite``, ``{model}_qdq.onnx`` (the same float weights written as
an ONNX graph, BatchNorm folded, quantized by ``quantize_static``: QDQ, int8 per-channel weights,
int8 activations) and ``{model}_f32.onnx``.

The cache folder is ``$PEMESH_MODEL_CACHE`` (default ``tests/.model_cache``, gitignored), one
sub-folder per hash of this file's source and the TensorFlow version: a CI run converts once, and
editing the generator regenerates. ``python -m tests.converter_zoo`` fills the cache.

Needs: tensorflow-cpu (the converter), onnx, onnxruntime (quantize_static).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests import model_cache

MODELS = ("resnet8", "dscnn", "mobilenet", "autoencoder")
KINDS = ("int8", "hybrid", "f32")
ONNX_KINDS = ("qdq", "f32")

INPUT_SHAPES = {"resnet8": (32, 32, 3), "dscnn": (49, 10, 1), "mobilenet": (96, 96, 3),
                "autoencoder": (640,)}
N_CLASSES = {"resnet8": 10, "dscnn": 12, "mobilenet": 2, "autoencoder": 640}
SEEDS = {"resnet8": 11, "dscnn": 12, "mobilenet": 13, "autoencoder": 14}
N_TRAIN = {"resnet8": 768, "dscnn": 768, "mobilenet": 384, "autoencoder": 1024}
EPOCHS = 2
N_CALIBRATION = 64

_HERE = Path(__file__).resolve().parent


def source_hash() -> str:
    """Hash of this generator's source and the TF version: the cache key."""
    return model_cache.source_hash(__file__, "tensorflow-cpu", "")


def cache_dir() -> Path:
    root = Path(os.environ.get("PEMESH_MODEL_CACHE") or _HERE / ".model_cache")
    return root / source_hash()


# --- smooth, realistic inputs -------------------------------------------------------------------

def smooth_inputs(model: str, n: int, seed: int = 0, labels: np.ndarray | None = None
                  ) -> np.ndarray:
    """``n`` float32 inputs for ``model`` (batch first, the Keras layout, no batch of 1 added).

    Images: a natural-image-like texture (1/f amplitude spectrum, random phases, correlated
    colour channels) plus an oriented low-frequency grating (the class picks its frequency and
    colour), range [0, 1]. Keyword features: 49 frames x 10 MFCC-like
    coefficients, a sine over time per coefficient with decaying amplitude plus a little noise
    (the class picks the temporal frequency), range about [-20, 20]. Autoencoder: 5 frames of a
    128-bin log-mel-like spectrum (smooth in frequency, slowly varying in time), about [-1, 1].
    """
    r = np.random.default_rng(seed)
    shape = INPUT_SHAPES[model]
    ncls = N_CLASSES[model]
    if labels is None:
        labels = r.integers(0, ncls, n)
    out = np.zeros((n,) + shape, np.float32)
    if model in ("resnet8", "mobilenet"):
        h, w, c = shape
        yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        freq = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
        freq[0, 0] = 1.0
        amp = 1.0 / freq                      # natural images: amplitude ~ 1/f
        amp[0, 0] = 0.0
        mix = np.array([[1.0, 0.9, 0.8], [0.0, 0.3, -0.3], [0.0, 0.1, 0.2]])
        for i in range(n):
            k = int(labels[i])
            planes = [np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * r.uniform(0, 1, (h, w)))))
                      for _ in range(3)]
            tex = np.stack(planes, -1) @ mix                 # correlated colour channels
            tex /= tex.std() + 1e-9
            # the class: an oriented low-frequency grating of a class-dependent frequency/colour
            f = (0.5 + 1.5 * (k % 5) / 4.0) * r.uniform(0.9, 1.1)     # cycles per image
            th = r.uniform(0, np.pi)
            wave = np.cos(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th))
                          + r.uniform(0, 2 * np.pi))
            colour = np.roll(np.array([1.0, 0.6, 0.3]), k // 5)
            img = 0.6 * tex + 1.5 * wave[..., None] * colour[None, None, :]
            img = (img - img.min()) / (img.max() - img.min() + 1e-9)
            out[i] = img * r.uniform(0.7, 1.0) + r.uniform(0, 0.2)
        return np.clip(out, 0.0, 1.0)
    if model == "dscnn":
        t = np.arange(49)[:, None] / 49.0
        coef = np.arange(10)[None, :]
        for i in range(n):
            k = int(labels[i])
            f = 1.0 + 0.5 * k
            amp = 15.0 * np.exp(-coef / 4.0) * r.uniform(0.6, 1.2)
            env = np.exp(-((t - r.uniform(0.3, 0.7)) ** 2) / 0.05)
            feat = amp * np.sin(2 * np.pi * f * t + r.uniform(0, 2 * np.pi, (1, 10))) * env
            feat = feat - 5.0 * (coef == 0) + r.normal(0, 0.5, (49, 10))
            out[i, :, :, 0] = feat
        return out
    # autoencoder: 5 frames x 128 mel bins
    bins = np.arange(128)[None, :] / 128.0
    frames = np.arange(5)[:, None] / 5.0
    for i in range(n):
        spec = np.zeros((5, 128))
        for _ in range(3):
            centre, width = r.uniform(0, 1), r.uniform(0.05, 0.3)
            spec += r.uniform(0.3, 1.0) * np.exp(-((bins - centre - 0.05 * frames) ** 2)
                                                 / (2 * width ** 2))
        spec = spec - 0.5 + r.normal(0, 0.03, spec.shape)
        out[i] = spec.reshape(-1)
    return out


# --- the Keras models --------------------------------------------------------------------------

def _bn():
    import keras
    return keras.layers.BatchNormalization(momentum=0.6)


def _resnet8(batch=None):
    import keras
    from keras import layers as L

    x0 = keras.Input((32, 32, 3), batch_size=batch)
    x = L.ReLU()(_bn()(L.Conv2D(16, 3, padding="same", kernel_initializer="he_normal")(x0)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.Conv2D(filters, 3, strides=stride, padding="same",
                     kernel_initializer="he_normal")(x)
        y = L.ReLU()(_bn()(y))
        y = _bn()(L.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")(y))
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, padding="same",
                         kernel_initializer="he_normal")(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=8)(x)
    x = L.Flatten()(x)
    x = L.Dense(10, name="logits")(x)
    return keras.Model(x0, L.Softmax()(x))


def _dscnn(batch=None):
    import keras
    from keras import layers as L

    x0 = keras.Input((49, 10, 1), batch_size=batch)
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", kernel_initializer="he_normal")(x0)
    x = L.ReLU()(_bn()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", depthwise_initializer="he_normal")(x)
        x = L.ReLU()(_bn()(x))
        x = L.Conv2D(64, 1, kernel_initializer="he_normal")(x)
        x = L.ReLU()(_bn()(x))
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    x = L.Flatten()(x)
    x = L.Dense(12, name="logits")(x)
    return keras.Model(x0, L.Softmax()(x))


_MBNET_BLOCKS = ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1),
                 (128, 1), (128, 1), (128, 1), (256, 2), (256, 1))


def _mobilenet(batch=None):
    import keras
    from keras import layers as L

    x0 = keras.Input((96, 96, 3), batch_size=batch)
    x = L.Conv2D(8, 3, strides=2, padding="same", kernel_initializer="he_normal")(x0)
    x = L.ReLU(6.0)(_bn()(x))
    for i, (filters, stride) in enumerate(_MBNET_BLOCKS):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same",
                              depthwise_initializer="he_normal", name=f"dw{i}")(x)
        x = L.ReLU(6.0)(_bn()(x))
        x = L.Conv2D(filters, 1, kernel_initializer="he_normal")(x)
        x = L.ReLU(6.0)(_bn()(x))
    x = L.AveragePooling2D(pool_size=3)(x)
    x = L.Flatten()(x)
    x = L.Dense(2, name="logits")(x)
    return keras.Model(x0, L.Softmax()(x))


def _autoencoder(batch=None):
    import keras
    from keras import layers as L

    x0 = keras.Input((640,), batch_size=batch)
    x = x0
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.ReLU()(_bn()(L.Dense(units, kernel_initializer="he_normal")(x)))
    x = L.Dense(640, name="logits")(x)
    return keras.Model(x0, x)


_BUILDERS = {"resnet8": _resnet8, "dscnn": _dscnn, "mobilenet": _mobilenet,
             "autoencoder": _autoencoder}


def train(model: str):
    """The Keras model ``model``, trained for EPOCHS on smooth synthetic data (seeded)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEEDS[model])
    tf.config.experimental.enable_op_determinism()
    net = _BUILDERS[model]()
    n = N_TRAIN[model]
    r = np.random.default_rng(SEEDS[model])
    if model == "autoencoder":
        x = smooth_inputs(model, n, seed=SEEDS[model] + 100)
        net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        net.fit(x, x, batch_size=32, epochs=EPOCHS, verbose=0, shuffle=True)
    else:
        y = r.integers(0, N_CLASSES[model], n)
        x = smooth_inputs(model, n, seed=SEEDS[model] + 100, labels=y)
        net.compile(optimizer=keras.optimizers.Adam(2e-3),
                    loss="sparse_categorical_crossentropy")
        net.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, shuffle=True)
    if model == "mobilenet":
        # deliberately: one depthwise channel with ~0 weights (its per-channel weight scale,
        # and so its requantization scale, is ~1e-10: TFLite Micro's QuantizeMultiplier gives
        # multiplier 0 there)
        layer = net.get_layer("dw3")
        k, b = layer.get_weights() if layer.use_bias else (layer.get_weights()[0], None)
        k[..., 5, :] = 1e-13 * np.sign(k[..., 5, :] + 1e-20)
        layer.set_weights([k] + ([b] if b is not None else []))
    return net


# --- conversion ----------------------------------------------------------------------------------

def _batch1(net, model: str):
    """The same network (same weights) built for batch 1."""
    one = _BUILDERS[model](batch=1)
    one.set_weights(net.get_weights())
    return one


def convert_tflite(net, model: str, kind: str) -> bytes:
    """TFLiteConverter: ``int8`` (full integer, int8 I/O), ``hybrid`` (dynamic range) or
    ``f32``. The CNNs are converted from a batch-1 copy of the Keras model: Keras 3's Flatten of a
    batch-None model becomes SHAPE/STRIDED_SLICE/PACK ops feeding RESHAPE, while with batch 1 it
    is one RESHAPE with a constant shape (as in the MLPerf Tiny files, written by Keras 2). The
    autoencoder (no reshape) is converted from the Keras model itself, so its input's
    shape_signature has batch -1 while its shape says 1, as shipped models have."""
    import tensorflow as tf

    if model == "autoencoder":
        conv = tf.lite.TFLiteConverter.from_keras_model(net)
    else:
        conv = tf.lite.TFLiteConverter.from_keras_model(_batch1(net, model))
    if kind in ("int8", "hybrid"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "int8":
        calib = smooth_inputs(model, N_CALIBRATION, seed=SEEDS[model] + 200)

        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]

        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


# --- ONNX (the same float weights, BatchNorm folded) ---------------------------------------------

def _keras_to_onnx(net, model: str):
    """An ONNX graph (NCHW, opset 13) computing what the Keras model computes, written by walking
    its layers (Conv2D, DepthwiseConv2D, BatchNormalization folded into the preceding
    conv/dense, ReLU, Add, AveragePooling2D, Flatten, Dense, Softmax)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    names: dict[int, str] = {}
    folded: dict[str, list] = {}   # conv/dense layer name -> [W, b] (BN folded)
    producer: dict[int, object] = {}
    image = len(INPUT_SHAPES[model]) == 3

    def tin(layer):
        node = layer._inbound_nodes[0]
        return [names[id(t)] for t in node.input_tensors]

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    # fold BN into the layer producing its input
    for layer in net.layers:
        cls = type(layer).__name__
        if cls in ("Conv2D", "DepthwiseConv2D", "Dense"):
            w = layer.get_weights()
            folded[layer.name] = [w[0], w[1] if len(w) > 1 else np.zeros(w[0].shape[-1]
                                                                          if cls != "DepthwiseConv2D"
                                                                          else w[0].shape[2])]
        if cls == "BatchNormalization":
            src = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
            gamma, beta, mean, var = layer.get_weights()
            s = gamma / np.sqrt(var + layer.epsilon)
            wb = folded[src.name]
            if type(src).__name__ == "DepthwiseConv2D":
                wb[0] = wb[0] * s.reshape(1, 1, -1, 1)
            else:
                wb[0] = wb[0] * s
            wb[1] = (wb[1] - mean) * s + beta

    x_shape = [1] + ([INPUT_SHAPES[model][2], *INPUT_SHAPES[model][:2]] if image
                     else list(INPUT_SHAPES[model]))
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)
    out_name = None
    for layer in net.layers:
        cls = type(layer).__name__
        outs = layer._inbound_nodes[0].output_tensors if layer._inbound_nodes else []
        o = f"{layer.name}_out"
        if cls == "InputLayer":
            names[id(outs[0])] = "input"
            continue
        ins = tin(layer)
        if cls in ("Conv2D", "DepthwiseConv2D"):
            w, b = folded[layer.name]
            kh, kw = w.shape[:2]
            if cls == "DepthwiseConv2D":
                wt = np.transpose(w[:, :, :, 0], (2, 0, 1))[:, None]      # [C, 1, kh, kw]
                group = w.shape[2]
            else:
                wt = np.transpose(w, (3, 2, 0, 1))                       # [O, I, kh, kw]
                group = 1
            sh, sw = layer.strides
            hin, win = layer._inbound_nodes[0].input_tensors[0].shape[1:3]
            pads = [0, 0, 0, 0]
            if layer.padding == "same":
                ph = max((-(-hin // sh) - 1) * sh + kh - hin, 0)
                pw = max((-(-win // sw) - 1) * sw + kw - win, 0)
                pads = [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2]
            nodes.append(helper.make_node(
                "Conv", [ins[0], init(layer.name + "_w", wt), init(layer.name + "_b", b)], [o],
                kernel_shape=[kh, kw], strides=[sh, sw], pads=pads, group=group))
        elif cls == "Dense":
            w, b = folded[layer.name]
            nodes.append(helper.make_node(
                "Gemm", [ins[0], init(layer.name + "_w", w.T), init(layer.name + "_b", b)], [o],
                transB=1))
        elif cls == "BatchNormalization":
            o = ins[0]                       # folded
        elif cls == "ReLU":
            mx = layer.max_value
            if mx is None:
                nodes.append(helper.make_node("Relu", ins, [o]))
            else:
                nodes.append(helper.make_node(
                    "Clip", [ins[0], init(o + "_lo", np.float32(0)),
                             init(o + "_hi", np.float32(float(mx)))], [o]))
        elif cls == "Add":
            nodes.append(helper.make_node("Add", ins, [o]))
        elif cls == "AveragePooling2D":
            ph, pw = layer.pool_size
            nodes.append(helper.make_node("AveragePool", ins, [o], kernel_shape=[ph, pw],
                                          strides=list(layer.strides)))
        elif cls == "Flatten":
            nodes.append(helper.make_node("Flatten", ins, [o], axis=1))
        elif cls == "Softmax":
            nodes.append(helper.make_node("Softmax", ins, [o], axis=-1))
        else:
            raise NotImplementedError(cls)
        names[id(outs[0])] = o
        out_name = o
    n_out = N_CLASSES[model]
    graph = helper.make_graph(nodes, model, [inp], [helper.make_tensor_value_info(
        out_name, TensorProto.FLOAT, [1, n_out])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="pemesh-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def onnx_input(model: str, x: np.ndarray) -> np.ndarray:
    """A Keras-layout batch as the ONNX model's input (NCHW for images)."""
    return np.transpose(x, (0, 3, 1, 2)).copy() if x.ndim == 4 else x


def quantize_onnx(f32_path: Path, model: str, out: Path) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    calib = onnx_input(model, smooth_inputs(model, N_CALIBRATION, seed=SEEDS[model] + 200))

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calib):
                return None
            self.i += 1
            return {"input": calib[self.i - 1:self.i]}

    quantize_static(str(f32_path), str(out), _Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QInt8)


# --- the cache -----------------------------------------------------------------------------------

def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def generate(model: str, folder: Path | None = None) -> None:
    """Train ``model`` and write all its files into the cache folder."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnx

    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    net = train(model)
    for kind in KINDS:
        _write(folder / f"{model}_{kind}.tflite", convert_tflite(net, model, kind))
    m = _keras_to_onnx(net, model)
    f32 = folder / f"{model}_f32.onnx"
    _write(f32, m.SerializeToString())
    with tempfile.TemporaryDirectory(dir=folder) as td:
        q = Path(td) / "q.onnx"
        quantize_onnx(f32, model, q)
        _write(folder / f"{model}_qdq.onnx", onnx.load(str(q)).SerializeToString())
    (folder / f"{model}.done").write_text("ok\n")


def path(name: str) -> Path:
    """The cached file ``name`` (e.g. ``"resnet8_int8.tflite"``), generated if missing."""
    return model_cache.cached_path(cache_dir(), name, MODELS, generate)


def main(argv: list[str]) -> int:
    return model_cache.fill(argv, MODELS, path, cache_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
