"""Datasets: IDX files on disk (local or downloaded) to ``tf.data`` pipelines."""
