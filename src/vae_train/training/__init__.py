"""Training: the ``tf.function`` loop (``loop``), its checkpoints (``checkpoints``), the optimizers and
their learning-rate schedules (``optimizers``), a clean stop on SIGTERM and SIGINT (``interrupts``),
and the TensorBoard event files (``summaries``)."""
