"""``make bench``'s iwae_passes section: the importance-weighted objective's decoder passes in training.

With ``model.train_samples`` K > 1 every training image is decoded K times. On the conv IWAE of the
literature setting (MNIST, dynamic binarization, latent_dim 32, K = 5), in interleaved rounds, the
training images a second when the decoder takes all K samples in one pass (the yardstick), two
samples a pass, and one (vae-train's choice on a CPU without batch normalization).
"""

from __future__ import annotations

from bench.machine import log
from bench.markdown import table as markdown_table

TRAIN_SAMPLES = 5
SAMPLES_PER_PASS = (None, 2, 1)  # None: one pass over all K, the yardstick


def iwae_passes(bench) -> dict:
    """The section's figures: each pass size's training rate and its ratio to one pass."""
    from bench.timing import paired_ratio, run_rounds
    from vae_train.run.build import samples_per_decoder_pass

    log("iwae_passes: the conv IWAE's training images a second by samples per decoder pass")
    rounds = 2 if bench.quick else 4
    images = 640 if bench.quick else 2_560
    overrides = ["data=mnist", "data.binarize=dynamic", "latent_dim=32", f"model.train_samples={TRAIN_SAMPLES}"]
    contenders = []
    for per_pass in SAMPLES_PER_PASS:
        loop = bench.loop(overrides)
        loop.model.samples_per_decoder_pass = per_pass  # before the step is traced
        loop.warm_up()
        contenders.append(bench.loop_contender(_name(per_pass), loop, images))
    run_rounds(contenders, rounds)
    yardstick = contenders[0]
    result = {"model": f"{loop.settings.model.name}, latent_dim {loop.settings.latent_dim}, precision {loop.policy}",
              "rounds": rounds, "images": images, "batch": loop.batch_size, "train_samples": TRAIN_SAMPLES,
              "chosen": _name(samples_per_decoder_pass(loop.settings.model, loop.parts.strategy)),
              "passes": [{"samples": contender.name, "median": contender.median,
                          "ratio": paired_ratio(contender.rates, yardstick.rates)} for contender in contenders]}
    for row in result["passes"]:
        log(f"  {row['samples']:>9}: {row['median']:6.0f} images/s, {row['ratio']:.2f}x")
    return result


def _name(per_pass: int | None) -> str:
    return f"all {TRAIN_SAMPLES}" if per_pass is None else str(per_pass)


def table(results: dict | None) -> list[str]:
    """docs/benchmarks.md's lines for the section."""
    if not results:
        return []
    lines = ["### The IWAE objective's decoder passes in training", "",
             f"{results['model']}, K = {results['train_samples']}, batch {results['batch']}: windows of "
             f"{results['images']} training images, {results['rounds']} interleaved rounds; vae-train decodes "
             f"{results['chosen']} sample(s) a pass here.", ""]
    rows = [[row["samples"] + (" (vae-train's)" if row["samples"] == results["chosen"] else ""),
             f"{row['median']:,.0f}", f"**{row['ratio']:.2f}**"] for row in results["passes"]]
    return lines + markdown_table(["samples a decoder pass", "training images/s (median)",
                                   f"× all {results['train_samples']} in one pass"], rows)
