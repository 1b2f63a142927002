"""``make bench``'s headline section: the reference against vae-train's loop, recipe C at batch 64.

In one process, on the same data: the reference (recipe C's VAE in Keras ``Model.fit`` with a custom
``train_step``, bench/reference.py) and vae-train's loop on the identical model, batch and optimizer,
with the machine's fp32 and bf16 matmul rates, timed in interleaved windows; the model's FLOPs per
image from its layer shapes. Then the Trainer's input pipeline alone against the same loop's training,
filed under ``pipeline``, and the process's peak memory after this phase.
"""

from __future__ import annotations

import statistics

from bench import machine
from bench.loops import RECIPE_C
from bench.machine import log


def headline(bench) -> dict:
    """The reference's Model.fit drives the rounds: after each of its windows, a callback runs
    one window of ours and one of the matmul, so all three share the machine's state."""
    from bench import flops
    from bench.reference import as_float_images, build_reference
    from bench.timing import FitWindows, paired_ratio, run_round, spread

    steps = 30 if bench.quick else 100
    rounds = 3 if bench.quick else 9
    log(f"reference vs ours: {rounds} rounds of {steps} steps at batch 64")
    ours = bench.loop(list(RECIPE_C))
    ours.warm_up()
    batch = ours.batch_size
    images = as_float_images(bench.dataset(ours.settings).train.images)
    reference = build_reference(ours.settings.latent_dim, seed=ours.settings.seed)
    ours_contender = bench.loop_contender("ours", ours, steps * batch)
    matmul = bench.matmul_contender()
    matmul_bf16 = bench.matmul_contender("bfloat16")
    others = [ours_contender, matmul, matmul_bf16]
    windows = FitWindows(warmup=20, steps=steps, rounds=rounds, between=lambda r: run_round(others, r))
    if windows.total_steps * batch > len(images):
        raise RuntimeError("not enough images for the reference's windows")
    reference.fit(images, batch_size=batch, epochs=1, steps_per_epoch=windows.total_steps, shuffle=True,
                  verbose=0, callbacks=[windows])
    reference_rates = [steps * batch / seconds for seconds in windows.seconds]
    flops_per_image = flops.training_flops_per_image(ours.model.encoder, ours.model.decoder)
    matmul_rates = [rate * 1e9 for rate in matmul.rates]

    def summary(rates):
        return {"median": statistics.median(rates), "rates": rates, "spread": spread(rates),
                "gflops": statistics.median(rates) * flops_per_image / 1e9,
                "peak_fraction": statistics.median(
                    r * flops_per_image / m for r, m in zip(rates, matmul_rates, strict=True))}

    ratios = [a / b for a, b in zip(ours_contender.rates, reference_rates, strict=True)]
    result = {
        "rounds": rounds, "steps_per_window": steps, "batch_size": batch,
        "reference": summary(reference_rates),
        "ours": {**summary(ours_contender.rates), "levers": bench.levers_of(ours)},
        "ratio": paired_ratio(ours_contender.rates, reference_rates),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        "flops_per_image": flops_per_image,
        "layers": [vars(layer) for layer in flops.model_work(ours.model.encoder, ours.model.decoder)],
        "matmul_gflops": statistics.median(matmul.rates), "matmul_size": machine.MATMUL_SIZE,
        "matmul_bf16_gflops": statistics.median(matmul_bf16.rates),
        "ours_bf16_peak_fraction": statistics.median(
            r * flops_per_image / (m * 1e9) for r, m in zip(ours_contender.rates, matmul_bf16.rates, strict=True)),
    }
    log(f"  reference {result['reference']['median']:.0f} images/s, ours {result['ours']['median']:.0f} images/s, "
        f"ratio {result['ratio']:.2f}x; ours at {100 * result['ours']['peak_fraction']:.0f}% of "
        f"{result['matmul_gflops']:.0f} GFLOP/s")
    bench.results["pipeline"] = _pipeline_alone(bench, ours)
    bench.keep(reference)
    bench.note_rss("headline")
    return result


def _pipeline_alone(bench, ours) -> dict:
    from bench.timing import paired_ratio, run_rounds

    pipeline = bench.pipeline_contender(ours, 64_000 if not bench.quick else 6_400)
    training = bench.loop_contender("ours", ours, 3_200)
    run_rounds([training, pipeline], 2 if bench.quick else 4)
    result = {"median": pipeline.median, "training_median": training.median,
              "ratio": paired_ratio(pipeline.rates, training.rates)}
    log(f"  pipeline alone {pipeline.median:.0f} images/s = {result['ratio']:.0f}x training")
    return result
