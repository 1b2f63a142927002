"""The channels-last lever: recipe C's convolutions trained in NHWC (Keras's default, what
vae-train's models use) against the same layers in NCHW, ``make bench``'s layout section.

vae-train's models have no layout switch, because the measurement below is why: on CPUs, oneDNN's
convolutions want channels last, and on GPUs TensorFlow's layout optimizer picks cuDNN's layout
itself. The stack is the recipe's convolutional layers only (its dense layers have no layout). The
two layouts are timed in interleaved rounds, in float32; a CPU whose TensorFlow build has no NCHW
convolution reports the section as not measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.machine import log

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

LAYOUTS = ("channels_last", "channels_first")


def channels_first_runs_here() -> bool:
    """Whether this CPU's TensorFlow build convolves NCHW tensors (oneDNN does on some CPUs; the plain
    Eigen kernels only take NHWC)."""
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 1, 4, 4)), tf.zeros((3, 3, 1, 1)), strides=1, padding="SAME", data_format="NCHW")
        return True
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False


def conv_stack(data_format: str, seed: int = 0) -> keras.Model:
    """Recipe C's encoder convolutions, then its decoder's transposed convolutions, on logits."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    shape = (28, 28, 1) if data_format == "channels_last" else (1, 28, 28)
    images = keras.Input(shape)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", data_format=data_format)(images)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    logits = layers.Conv2DTranspose(1, 3, padding="same", data_format=data_format)(x)
    return keras.Model(images, logits)


def training_steps(data_format: str, images: tf.Tensor, seed: int = 0):
    """A compiled function running ``count`` RMSprop steps of the stack on ``images`` (NHWC)."""
    import keras
    import tensorflow as tf

    model = conv_stack(data_format, seed)
    optimizer = keras.optimizers.RMSprop()
    if data_format == "channels_first":
        images = tf.transpose(images, [0, 3, 1, 2])

    @tf.function
    def steps(count: tf.Tensor) -> tf.Tensor:
        loss = tf.constant(0.0)
        for _ in tf.range(count):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(images, logits))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return steps


def layout(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    import keras
    import tensorflow as tf

    from bench.timing import Contender, paired_ratio, run_rounds, timed

    if not channels_first_runs_here():
        log("layout: skipped, no channels-first convolution kernel on this CPU")
        return {"skipped": "this CPU's TensorFlow build has no channels-first convolution"}
    rounds, steps, batch = (2, 20, 64) if bench.quick else (5, 100, 64)
    log(f"layout: {' vs '.join(LAYOUTS)}, {rounds} rounds of {steps} steps")
    keras.mixed_precision.set_dtype_policy("float32")  # an earlier section may have left another
    images = tf.cast(tf.random.Generator.from_seed(0).uniform([batch, 28, 28, 1]) < 0.5, tf.float32)
    count = tf.constant(steps)
    contenders = []
    for data_format in LAYOUTS:
        run = training_steps(data_format, images)
        run(tf.constant(5)).numpy()  # trace and warm up
        contenders.append(Contender(data_format, steps * batch, timed(lambda run=run: run(count).numpy())))
    run_rounds(contenders, rounds)
    result = {"rounds": rounds, "steps_per_window": steps, "batch_size": batch, "variants": [
        {"layout": c.name, "median": c.median, "rates": c.rates,
         "ratio": paired_ratio(c.rates, contenders[0].rates)} for c in contenders]}
    for variant in result["variants"]:
        log(f"  {variant['layout']:15s} {variant['median']:7.0f} images/s {variant['ratio']:.2f}x")
    return result
