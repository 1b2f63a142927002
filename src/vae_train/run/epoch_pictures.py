"""The epoch-end hook of a training run: the pictures of :mod:`vae_train.evaluation.pictures`, the
projector's codes and the optional histograms, into the run's TensorBoard files."""

from __future__ import annotations

import tensorflow as tf

from vae_train.evaluation.pictures import ENCODE_BATCH, Pictures, enlarged, to_uint8
from vae_train.evaluation.projector import EmbeddingProjector
from vae_train.training.loop import EpochRecord
from vae_train.training.summaries import TensorBoardWriters


class TensorBoardPictures:
    """Epoch-end hook of the Trainer: the pictures into ``tensorboard/test`` after every
    ``evaluation.every_n_epochs`` epochs and after the last, the projector's codes, and optionally
    histograms of the weights and of the gradients of the objective on a fixed test batch."""

    def __init__(self, pictures: Pictures, writers: TensorBoardWriters, last_epoch: int,
                 projector: EmbeddingProjector | None = None, seed: int = 0):
        self.pictures = pictures
        self.writers = writers
        self.config = pictures.config
        self.last_epoch = last_epoch
        self.projector = projector
        self.seed = seed

    @classmethod
    def for_run(cls, pictures: Pictures, writers: TensorBoardWriters, last_epoch: int, seed: int
                ) -> TensorBoardPictures:
        """The hook for a training run, its projector in the test run of ``writers``."""
        projector = None
        if pictures.config.projector and len(pictures.code_images):
            projector = EmbeddingProjector(writers.root / "test", pictures.code_images, pictures.code_labels,
                                           pictures.class_names)
        return cls(pictures, writers, last_epoch, projector, seed)

    def __call__(self, record: EpochRecord) -> None:
        if record.epoch % self.config.every_n_epochs and record.epoch != self.last_epoch:
            return
        codes = None
        if len(self.pictures.code_images):
            # The test figures' codes of the same images, when they cover them: no second encoding.
            covered = record.test_codes is not None and len(record.test_codes) >= len(self.pictures.code_images)
            codes = record.test_codes[:len(self.pictures.code_images)] if covered else self.pictures.codes()
        # Rounded here, not by TensorBoard (which truncates), so the PNGs of vae-eval are the same, but
        # enlarged to be read at TensorBoard's card size.
        pictures = {name: enlarged(to_uint8(picture)) for name, picture in self.pictures.render(codes).items()}
        self.writers.images("test", record.step, pictures)
        if self.projector is not None and codes is not None:
            self.projector.write(codes)
        if self.config.histograms:
            self.writers.histograms("train", record.step, self._histograms())
        self.writers.flush()

    def _histograms(self) -> dict[str, tf.Tensor]:
        model = self.pictures.model
        images = tf.constant(self.pictures.images[:ENCODE_BATCH])
        noise = tf.random.Generator.from_seed(self.seed)
        with tf.GradientTape() as tape:
            objective = tf.reduce_mean(model.loss_terms(images, training=False, noise=noise)["objective"])
        gradients = tape.gradient(objective, model.trainable_variables)
        # Keras names a variable after its layer only ("z_mean/kernel"); the part makes it unique.
        part_of = {id(variable): part.name for part in (model.encoder, model.decoder)
                   for variable in part.trainable_variables}
        values = {}
        for variable, gradient in zip(model.trainable_variables, gradients, strict=True):
            name = f"{part_of[id(variable)]}/{variable.path}"
            values[f"weights/{name}"] = variable
            values[f"gradients/{name}"] = gradient
        return values
