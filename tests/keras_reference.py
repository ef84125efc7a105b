"""The Keras side of tests/test_harmonization.py, run in its own process (TensorFlow with the
legacy Keras 2 API, as the Harmonization models were made and as keras-cv-attention-models'
LeViT and MaxViT need).

    TF_USE_LEGACY_KERAS=1 python tests/keras_reference.py OUT_DIR IMAGES.npy ARCH [ARCH ...]

For each architecture: the model built through the definition the `harmonization` package
(0.0.9) uses, its weights randomised (seeded; kernels keep their initialiser, the rest is drawn
so that biases, batch-norm statistics, layer scales and position tables all matter), saved as
the package's file is (a whole saved model for VGG-16, ResNet50V2 and EfficientNet-B0, weights
only for the others), and the output of its penultimate layer (the embedding) and of its last
layer on the images, preprocessed as AlignVis does: `tf.image.resize(..., 'bicubic')` to
224 x 224, then harmonization.models.preprocess_input (/255, minus the ImageNet mean, over its
standard deviation). Then the file OUT_DIR/ours_<arch>.h5, if present (our writer's), is
loaded into a fresh model with Keras's own `load_weights`, and its outputs are saved too.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
keras = tf.keras

MEAN = np.array([0.485, 0.456, 0.406])  # harmonization/models/preprocess.py
STD = np.array([0.229, 0.224, 0.225])


def preprocess_input(images):
    """harmonization.models.preprocess_input (0.0.9), as written there."""
    images = images / 255.0
    images = images - MEAN
    images = images / STD
    return images


def build(arch: str):
    """(model, name of the embedding layer, saved whole?) as the package builds it."""
    if arch == "vgg16":  # load_VGG16: tf.keras.models.load_model of a keras.applications model
        return keras.applications.VGG16(weights=None), "fc2", True
    if arch == "resnet50v2":
        return keras.applications.ResNet50V2(weights=None), "avg_pool", True
    if arch == "efficientnetb0":  # load_EfficientNetB0 imports efficientnet.keras (qubvel)
        import efficientnet.tfkeras as efn

        return efn.EfficientNetB0(weights=None), "avg_pool", True
    if arch == "vitb16":  # load_ViT_B16
        from vit_keras import vit

        model = vit.vit_b16(image_size=224, activation="linear", pretrained=False,
                            include_top=True, pretrained_top=False)  # fmt: skip
        return model, "ExtractToken", False
    if arch == "convnext_tiny":  # load_tiny_ConvNeXT
        from keras_cv_attention_models.convnext import ConvNeXtTiny

        return ConvNeXtTiny(classifier_activation=None, pretrained=None), "head_ln", False
    if arch == "levit128":  # load_LeViT_small (which lets kecam fetch ImageNet weights first)
        from keras_cv_attention_models.levit import LeViT128

        model = LeViT128(classifier_activation=None, use_distillation=False, pretrained=None)
        return model, "head_bn", False  # pooled, batch-normalised: 1.4's `flatten`
    if arch == "maxvit_tiny":  # load_tiny_MaxViT
        from keras_cv_attention_models.maxvit import MaxViT_Tiny

        model = MaxViT_Tiny(classifier_activation=None, pretrained=None)
        return model, "features_tanh", False
    raise SystemExit(f"unknown architecture {arch}")


def randomise(model, rng) -> None:
    for w in model.weights:
        name, shape = w.name, tuple(w.shape)
        if ("kernel" in name and "depthwise" not in name) or "depthwise_kernel" in name:
            continue  # the initialiser's draw
        if "moving_variance" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in name:
            value = 1 + 0.1 * rng.standard_normal(shape)
        elif name.split("/")[-1].startswith("weight"):  # kecam's layer scale
            value = rng.uniform(0.3, 1.0, shape)
        elif any(k in name for k in ("positional_embedding", "pos_embedding", "cls")):
            value = 0.5 * rng.standard_normal(shape)
        else:  # biases, betas, moving means
            value = 0.1 * rng.standard_normal(shape)
        w.assign(value.astype("float32"))


def outputs(model, layer: str, x) -> tuple[np.ndarray, np.ndarray]:
    head = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    features, last = head(x, training=False)
    return np.asarray(features), np.asarray(last)


def main() -> None:
    out, images, archs = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3:]
    resized = tf.image.resize(images.astype("float32"), (224, 224), method="bicubic").numpy()
    x = preprocess_input(resized).astype("float32")
    np.save(out / "keras_resized.npy", resized)
    for i, arch in enumerate(archs):
        keras.utils.set_random_seed(i)
        model, layer, whole = build(arch)
        randomise(model, np.random.default_rng(i))
        if whole:
            model.save(out / f"{arch}.h5")
        else:
            model.save_weights(out / f"{arch}.h5")
        features, last = outputs(model, layer, x)
        np.savez(out / f"keras_{arch}.npz", x=x, features=features, last=last)
        ours = out / f"ours_{arch}.h5"
        if ours.exists():
            model.load_weights(ours)  # Keras's own reader, by layer order
            features, last = outputs(model, layer, x)
            np.savez(out / f"keras_ours_{arch}.npz", features=features, last=last)
        keras.backend.clear_session()
        print(arch, features.shape, flush=True)


if __name__ == "__main__":
    main()
