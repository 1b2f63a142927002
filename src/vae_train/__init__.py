"""vae-train: config-driven training of autoencoders in TensorFlow."""

__version__ = "0.1.0"
