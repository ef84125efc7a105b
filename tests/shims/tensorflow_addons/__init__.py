"""Stand-in for tensorflow-addons in tests/keras_reference.py's process only.

vit-keras 0.1.x (the version the Harmonization ViT file was made with) imports
tensorflow_addons for one fallback it never takes on TensorFlow >= 2.4 (GELU, which
tf.keras.activations has). The real package no longer imports beside Keras 3 (it reaches for
keras.src.engine), so this module takes its place; using anything from it is an error.
"""


class _Unavailable:
    def __getattr__(self, name):
        raise RuntimeError(f"tensorflow_addons.{name} is not available in this test process")


activations = _Unavailable()
