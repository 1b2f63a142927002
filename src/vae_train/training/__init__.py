"""Training: devices and strategy, the tf.function loop, checkpoints and TensorBoard."""
