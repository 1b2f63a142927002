"""``make bench``'s levers section: each speed lever flipped away from the defaults, recipe C at batch 64.

One loop per variant, in one process, timed in interleaved rounds with the defaults; each variant's
rate against the defaults' in the same rounds. Most variants are vae-train settings; a few are
bench-only patches of the built loop (what the reference computes, no input pipeline, the strategy's
distributed iterator). A variant too slow for the rounds runs one short window after them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.loops import RECIPE_C
from bench.machine import log


@dataclass
class Variant:
    name: str
    setting: str
    overrides: list[str] = field(default_factory=list)
    note: str = ""
    patch: Callable | None = None  # applied to the built loop (bench-only variants)
    scale: float = 1.0  # of the window's images, for very slow variants
    slow: bool = False  # too slow for the rounds: one short window after them


def levers(bench) -> dict:
    """Each lever flipped away from the defaults, interleaved with the defaults in one process."""
    from bench.timing import paired_ratio, run_rounds

    rounds = 2 if bench.quick else 5
    images = 1_600 if bench.quick else 4_800
    variants = [Variant("defaults", ""), *lever_variants(bench)]
    log(f"levers: {len(variants) - 1} variants x {rounds} rounds")
    contenders, loops = [], []
    for variant in variants:
        loop = bench.loop([*RECIPE_C, *variant.overrides])
        if variant.patch:
            variant.patch(loop)
        loop.warm_up(1 if variant.slow else 10)
        loops.append(loop)
        contenders.append(bench.loop_contender(variant.name, loop, max(loop.batch_size, images * variant.scale)))
    run_rounds([c for c, v in zip(contenders, variants, strict=True) if not v.slow], rounds)
    for contender, variant in zip(contenders, variants, strict=True):
        if variant.slow:  # one short window, against the defaults' median
            contender.run_window()
            contender.rates *= rounds
    result = {"rounds": rounds, "images_per_window": images, "variants": [
        {"name": v.name, "setting": v.setting or bench.levers_of(loop), "note": v.note, "median": c.median,
         "rates": c.rates, "ratio": paired_ratio(c.rates, contenders[0].rates)}
        for v, c, loop in zip(variants, contenders, loops, strict=True)]}
    for variant in result["variants"]:
        log(f"  {variant['name']:28s} {variant['setting'][:60]:60s} {variant['median']:7.0f} images/s "
            f"{variant['ratio']:.2f}x")
    return result


def lever_variants(bench) -> list[Variant]:
    """Each differs from the defaults in one lever."""
    from vae_train.runtime.precision import POLICIES

    settings = bench.settings(list(RECIPE_C))
    t = settings.trainer
    variants = [Variant("steps per tf.function call", f"trainer.steps_per_execution={spe}",
                        [f"trainer.steps_per_execution={spe}"]) for spe in (1, 10) if spe != t.steps_per_execution]
    xla = str(not t.jit_compile).lower()
    variants.append(Variant("XLA", f"trainer.jit_compile={xla}", [f"trainer.jit_compile={xla}"],
                            "XLA's CPU convolutions are Eigen's, not oneDNN's", scale=0.5))
    current = bench.levers_precision(settings)
    for policy in POLICIES:
        if policy != current:
            slow = policy == "mixed_float16"
            variants.append(Variant(
                "precision", f"trainer.precision={policy}", [f"trainer.precision={policy}"],
                "no float16 matrix unit on this CPU: slow fallback kernels (one 1-step window)" if slow else "",
                scale=0.0 if slow else 1.0, slow=slow))
    variants.append(Variant("loss on probabilities", "sigmoid, then cross-entropy of probabilities", [],
                            "what the reference computes (bench-only variant)", _unfused_loss))
    variants.append(Variant("input pipeline", "data.gather_batches=false", ["data.gather_batches=false"],
                            "tf.data shuffles and batches the images themselves"))
    variants.append(Variant("input pipeline", "one constant batch, no pipeline", [],
                            "the pipeline's whole cost, an upper bound (bench-only variant)", _constant_input))
    variants.append(Variant("dataset distribution", "the strategy's distributed iterator, not the dataset's own",
                            [], "what multi-device and GPU runs read; no use on one CPU (bench-only variant)",
                            _distributed_iterator))
    default_layers = ["model.hidden_units=[128]", "model.decoder_hidden_units=[256]", "model.activation=swish"]
    variants.append(Variant("architecture", " ".join(default_layers), default_layers,
                            "the default cvae's layers (the search of docs/results.md) for recipe C's; "
                            "issue 12 allows at most 1.5x the time per step, a ratio >= 0.67"))
    return variants


def _unfused_loss(loop) -> None:
    """Bench-only variant: the reconstruction term as the reference computes it, sigmoid then the
    binary cross-entropy of probabilities, instead of the fused cross-entropy on logits."""
    import keras
    import tensorflow as tf

    def bce_of_probabilities(images, logits):
        per_pixel = keras.losses.binary_crossentropy(images, tf.sigmoid(logits))
        return 784.0 * tf.reduce_mean(tf.reshape(per_pixel, [tf.shape(images)[0], -1]), axis=1)

    loop.model.reconstruction_loss = bce_of_probabilities


def _constant_input(loop) -> None:
    """Bench-only variant: the same batch every step, so the input pipeline costs nothing."""
    import tensorflow as tf

    first = next(iter(loop.parts.pipelines.train(0)))
    loop.iterator = loop.trainer.epoch_iterator(tf.data.Dataset.from_tensors(first).repeat())


def _distributed_iterator(loop) -> None:
    """Bench-only variant: the pipeline wrapped by experimental_distribute_dataset, as the Trainer
    reads it on GPUs and several replicas, where on one CPU it reads the dataset's own iterator."""
    loop.iterator = iter(loop.trainer.strategy.experimental_distribute_dataset(loop.parts.pipelines.train(0).repeat()))
