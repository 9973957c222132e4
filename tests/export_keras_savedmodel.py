"""Keras ``model.export()`` to a TensorFlow SavedModel and back (a helper for tests/test_export.py, issue 18).

Two steps, each its own process because Keras needs ``KERAS_BACKEND=tensorflow`` before it is imported:

- ``python tests/export_keras_savedmodel.py export WEIGHTS.safetensors HxW=DIR ...``: a Keras model holding
  ``upsample.backends.keras.Upsample`` (NHWC input of that size, dynamic batch), exported to each ``DIR``;
- ``python tests/export_keras_savedmodel.py serve DIR INPUT.npy OUTPUT.npy ...``: reloads each SavedModel
  with ``tf.saved_model.load`` alone (upsample not imported: what a serving process has) and saves its output.
"""

from __future__ import annotations

import sys


def export(weights_path: str, *targets: str) -> None:
    import keras

    import upsample
    from upsample.backends import keras as uk

    assert keras.backend.backend() == "tensorflow", "run with KERAS_BACKEND=tensorflow"
    spec, weights = upsample.load_weights(weights_path)
    for target in targets:
        size, directory = target.split("=", 1)
        height, width = (int(n) for n in size.split("x"))
        inputs = keras.Input((height, width, spec.in_channels))
        model = keras.Model(inputs, uk.Upsample(spec, weights=weights, data_format="channels_last")(inputs))
        model.export(directory, format="tf_saved_model", verbose=False)


def serve(*triples: str) -> None:
    import numpy as np
    import tensorflow as tf

    for directory, input_path, output_path in zip(triples[::3], triples[1::3], triples[2::3], strict=True):
        served = tf.saved_model.load(directory)
        np.save(output_path, served.serve(tf.constant(np.load(input_path))).numpy())
    assert "upsample" not in sys.modules, "serving must not need upsample"


if __name__ == "__main__":
    {"export": export, "serve": serve}[sys.argv[1]](*sys.argv[2:])
