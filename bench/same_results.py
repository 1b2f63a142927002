"""``make bench``'s same_results section: whether vae-train's loop and the reference reach the same loss.

Both train N steps of recipe C from the same initial weights on the same batches, then one evaluator
(float32, fixed noise, the same test images) scores each; ours is repeated with other noise seeds to
measure the noise, and once in float32 when the default precision is another (the precision lever).
The difference must be within three standard deviations of ours over the seeds, or 1% of the loss if
that is more.
"""

from __future__ import annotations

import statistics

from bench.loops import RECIPE_C
from bench.machine import log


def same_results(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.reference import build_reference, copy_weights, parts
    from vae_train.models import build_model

    steps = 60 if bench.quick else 500
    last = min(100, steps // 2)
    seeds = (0, 1, 2)
    configurations = [(seed, []) for seed in seeds]
    default_policy = bench.settings(list(RECIPE_C))
    if bench.levers_precision(default_policy) != "float32":
        configurations.append((0, ["trainer.precision=float32"]))  # the precision lever itself
    log(f"same results: {steps} steps, the reference and {len(configurations)} runs of ours")
    runs = []
    batches = initial = None
    for noise_seed, overrides in configurations:
        ours = bench.loop([*RECIPE_C, *overrides])
        if initial is None:
            initial = (ours.model.encoder.get_weights(), ours.model.decoder.get_weights())
            take = ours.parts.pipelines.train(0).take(steps)
            batches = np.concatenate([b.numpy() for b in take])
        if noise_seed:
            ours.model.noise.reset_from_seed(10_000 + noise_seed)
        ours.steps(steps - last)
        sums = ours.steps(last)
        runs.append({"noise_seed": noise_seed, "precision": ours.policy, "lever": bool(overrides),
                     "train_loss_last": float(sums[0] / sums[-1]),
                     "weights": (ours.model.encoder.get_weights(), ours.model.decoder.get_weights())})
        settings = ours.settings
    # The reference and the evaluating model compute in float32, whatever ours did.
    keras.mixed_precision.set_dtype_policy("float32")
    reference = build_reference(settings.latent_dim, seed=settings.seed)
    # Built for its layers only; the reference gets vae-train's initial weights.
    donor = build_model(settings.model, settings.latent_dim, ours.parts.dataset.image_shape, settings.seed)
    donor.encoder.set_weights(initial[0])
    donor.decoder.set_weights(initial[1])
    copy_weights((donor.encoder, donor.decoder), parts(reference))
    history = _LossRecorder()
    reference.fit(batches, batch_size=settings.data.batch_size, shuffle=False, epochs=1, verbose=0,
                  callbacks=[history])
    reference_last = history.mean_of_last(last, settings.latent_dim)

    # One evaluation for all: fp32 weights copied into one model, fixed noise, the same images.
    evaluator = build_model(settings.model, settings.latent_dim, ours.parts.dataset.image_shape, settings.seed)
    eval_images = tf.constant(_test_images(bench.dataset(settings), 5000))

    def evaluate(encoder_weights, decoder_weights) -> dict:
        evaluator.encoder.set_weights(encoder_weights)
        evaluator.decoder.set_weights(decoder_weights)
        noise = tf.random.Generator.from_seed(7)
        terms = evaluator.loss_terms(eval_images, training=False, noise=noise)
        reconstruction = float(tf.reduce_mean(terms["reconstruction"]))
        kl = float(tf.reduce_mean(terms["kl"]))
        return {"eval_loss": reconstruction + kl, "eval_objective": reconstruction + kl / settings.latent_dim}

    copy_weights(parts(reference), (evaluator.encoder, evaluator.decoder))
    reference_result = {**evaluate(evaluator.encoder.get_weights(), evaluator.decoder.get_weights()),
                        "train_loss_last": reference_last}
    ours_results = [{key: value for key, value in run.items() if key != "weights"} | evaluate(*run["weights"])
                    for run in runs]
    ours_losses = [run["eval_loss"] for run in ours_results if not run["lever"]]
    noise = statistics.stdev(ours_losses)
    difference = reference_result["eval_loss"] - statistics.mean(ours_losses)
    # Three noise-only repeats give a rough spread; the tolerance is 3 of them, at least 1% of the loss.
    tolerance = max(3 * noise, 0.01 * abs(reference_result["eval_loss"]))
    log(f"  reference {reference_result['eval_loss']:.2f}, ours {[round(x, 2) for x in ours_losses]} "
        f"(difference {difference:+.2f}, tolerance {tolerance:.2f})")
    return {
        "steps": steps, "last": last, "eval_images": int(eval_images.shape[0]),
        "reference": reference_result, "ours": ours_results, "difference": difference,
        "noise": noise, "tolerance": tolerance, "within_noise": abs(difference) <= tolerance,
    }


class _LossRecorder:
    """Keras callback (duck-typed) keeping the running means Model.fit reports after each batch."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.means: list[tuple[float, float]] = []

            def on_train_batch_end(self, batch, logs=None):
                self.means.append((float(logs["reconstruction_loss"]), float(logs["kl_loss"])))

            def mean_of_last(self, count: int, latent_dim: int) -> float:
                """Mean over the last ``count`` batches of reconstruction + KL summed over dimensions
                (the reference reports the KL averaged over them), from the running means."""
                n = len(self.means)
                totals = [(i + 1) * (r + latent_dim * k) for i, (r, k) in enumerate(self.means)]
                return (totals[-1] - totals[n - count - 1]) / count

        return Recorder()


def _test_images(dataset, count: int):
    from bench.reference import as_float_images

    return as_float_images(dataset.test.images[:count])
