"""``make bench``'s iw_bound section: the IWAE bound's decoder passes, by their size.

The bound decodes every test image K times (K = 5000 for a final figure: hours of a 2-core machine for
the conv VAE), in passes of at most ``decodes_per_pass()`` images. On the conv VAE of the literature
setting (MNIST, dynamic binarization, latent_dim 32, the weights as built), in interleaved rounds, the
bound's decodes a second with passes of each size against passes of 2048 (the size before); and the
bound itself, which must not depend on the passes.
"""

from __future__ import annotations

from bench.machine import log
from bench.markdown import table as markdown_table

PASS_SIZES = (2048, 512)  # compared with decodes_per_pass(); the first is the yardstick
SAMPLES = 20


def iw_bound(bench) -> dict:
    """The section's figures: each pass size's rate, its ratio to the yardstick's, and its bound."""
    from bench.timing import Contender, paired_ratio, run_rounds, timed
    from vae_train.evaluation.likelihood import decodes_per_pass, per_image_bounds

    log("iw_bound: the IWAE bound's decodes a second by decoder pass size")
    rounds = 2 if bench.quick else 5
    loop = bench.loop(["data=mnist", "data.binarize=dynamic", "latent_dim=32"])
    test = loop.parts.pipelines.test_batches()
    test = test.take(test.batch_size)  # one batch: every pass size below splits it differently
    sizes = [*PASS_SIZES, decodes_per_pass()]
    bounds, contenders = {}, []
    for size in sizes:
        def bound(size=size):
            bounds[size] = float(per_image_bounds(loop.model, test, SAMPLES, decodes_per_chunk=size)[1].mean())

        bound()  # traced
        contenders.append(Contender(str(size), int(test.pixels.shape[0]) * SAMPLES, timed(bound)))
    run_rounds(contenders, rounds)
    yardstick = contenders[0]
    result = {"model": f"{loop.settings.model.name}, latent_dim {loop.settings.latent_dim}, precision {loop.policy}",
              "rounds": rounds, "images": int(test.pixels.shape[0]), "samples": SAMPLES,
              "batch": test.batch_size, "default": sizes[-1],
              "passes": [{"size": size, "median": contender.median,
                          "ratio": paired_ratio(contender.rates, yardstick.rates), "bound": bounds[size]}
                         for size, contender in zip(sizes, contenders, strict=True)]}
    for row in result["passes"]:
        log(f"  passes of {row['size']:5d}: {row['median']:6.0f} decodes/s, {row['ratio']:.2f}x; "
            f"bound {row['bound']:.4f}")
    return result


def table(results: dict | None) -> list[str]:
    """docs/benchmarks.md's lines for the section."""
    if not results:
        return []
    first = results["passes"][0]
    lines = ["### The IWAE bound's decoder passes", "",
             f"{results['model']}: the bound of {results['images']} test images (one batch of {results['batch']}) "
             f"with K = {results['samples']}, in decoder passes of each size, {results['rounds']} interleaved "
             f"rounds; vae-train's passes are {results['default']} images.", ""]
    rows = [[f"{row['size']}" + (" (vae-train's)" if row["size"] == results["default"] else ""),
             f"{row['median']:,.0f}", f"**{row['ratio']:.2f}**",
             f"{row['bound']:.4f} ({row['bound'] - first['bound']:+.4f})"]
            for row in results["passes"]]
    return lines + markdown_table(["images a pass", "decodes/s (median)", f"× passes of {first['size']}",
                                   "bound, nats per image"], rows)
