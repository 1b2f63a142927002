"""``make bench``'s sweep section: batch size x model, vae-train's defaults on Fashion-MNIST.

For each model and batch size, in interleaved rounds: the training loop, the Trainer's input
pipeline alone, and the fp32 and bf16 matmul rates; each row's share of the matmul peaks and its
pipeline-to-training ratio, and per model the batch closest to the fp32 peak.
"""

from __future__ import annotations

import statistics

from bench.machine import log

BATCH_SIZES = (32, 64, 128, 256)
MODELS = ("dense_ae", "conv_ae", "cvae")


def sweep(bench) -> dict:
    """See the module's docstring; ``bench`` is the running :class:`bench.run.Bench`."""
    from bench import flops
    from bench.timing import paired_ratio, run_rounds

    rounds = 2 if bench.quick else 3
    images = 1_600 if bench.quick else 6_400
    log(f"sweep: {len(MODELS)} models x {len(BATCH_SIZES)} batch sizes, {rounds} rounds")
    rows = []
    matmul = bench.matmul_contender()
    matmul_bf16 = bench.matmul_contender("bfloat16")
    for model in MODELS:
        for batch in BATCH_SIZES:
            loop = bench.loop(["data=fashion", f"model={model}", f"data.batch_size={batch}"])
            loop.warm_up()
            ours = bench.loop_contender("ours", loop, images)
            pipeline = bench.pipeline_contender(loop, 10 * images)
            matmul.rates.clear()
            matmul_bf16.rates.clear()
            run_rounds([ours, pipeline, matmul, matmul_bf16], rounds)
            per_image = flops.training_flops_per_image(loop.model.encoder, loop.model.decoder)
            rows.append({
                "model": model, "batch_size": batch, "median": ours.median, "rates": ours.rates,
                "flops_per_image": per_image, "gflops": ours.median * per_image / 1e9,
                "peak_fraction": statistics.median(
                    r * per_image / (m * 1e9) for r, m in zip(ours.rates, matmul.rates, strict=True)),
                "matmul_gflops": statistics.median(matmul.rates),
                "precision": loop.policy,
                "bf16_peak_fraction": statistics.median(
                    r * per_image / (m * 1e9) for r, m in zip(ours.rates, matmul_bf16.rates, strict=True)),
                "pipeline": pipeline.median, "pipeline_ratio": paired_ratio(pipeline.rates, ours.rates),
            })
            row = rows[-1]
            log(f"  {model:8s} batch {batch:3d}: {ours.median:7.0f} images/s, "
                f"{100 * row['peak_fraction']:.0f}% of matmul peak, pipeline {row['pipeline_ratio']:.0f}x")
    best = {model: max((r for r in rows if r["model"] == model), key=lambda r: r["peak_fraction"])
            for model in MODELS}
    return {"rounds": rounds, "images_per_window": images, "rows": rows, "best": best}
