"""Load a ``.keras`` model in a fresh process and save its predictions (a helper for tests/test_keras.py).

Usage: ``python tests/keras_model_roundtrip.py MODEL.keras INPUT.npy OUTPUT.npy`` with the same
``KERAS_BACKEND`` as the process that saved the model. No ``custom_objects`` are passed: importing
``upsample.backends.keras`` registers ``Upsample`` with Keras, which is all a user needs to do.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

import upsample.backends.keras  # noqa: F401  (registers upsample>Upsample for deserialization)


def main(model_path: str, input_path: str, output_path: str) -> None:
    model = keras.saving.load_model(model_path)
    np.save(output_path, keras.ops.convert_to_numpy(model(np.load(input_path))))


if __name__ == "__main__":
    main(*sys.argv[1:])
