"""``make bench``'s colour section: the user's own colour images, read as ``data=folder`` reads them.

For each of 32x32x3 and 64x64x3: a folder of generated PNG files is decoded once into the cache (timed),
then, in interleaved rounds on the same loop, the default model's training rate and the rate of the
Trainer's own input iterator alone (batches gathered from the memory-mapped cache). The pipeline must
stay at least 20x the training rate, so that reading the images never slows training.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import markdown
from bench.machine import log

SIDES = (32, 64)
CLASSES = 4
PIPELINE_TARGET = 20.0


def write_folder(root: Path, side: int, count: int) -> Path:
    """``count`` smooth colour images with a class-coloured square, in ``CLASSES`` class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(side)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    for index in range(count):
        label = index % CLASSES
        colour = rng.random(3, dtype=np.float32)
        pixels = ramp[:, None, None] * colour + ramp[None, :, None] * (1 - colour)
        top, left = rng.integers(0, side // 2, 2)
        pixels[top:top + side // 4, left:left + side // 4] = 60 * label
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:06d}.png", compress_level=1)
    return root


def colour(bench) -> dict:
    """The section's figures, by image shape."""
    from bench.loops import LoopUnderTest
    from bench.timing import paired_ratio, run_rounds
    from vae_train.config import to_settings
    from vae_train.launch.train_cli import compose

    log("colour images from a folder: the input pipeline against training")
    count = 1024 if bench.quick else 8192
    rounds = 2 if bench.quick else 4
    results = {}
    for side in SIDES:
        root = write_folder(bench.workdir / f"colour_{side}", side, count)
        overrides = ["data=folder", f"data.root={root}", f"data.cache_dir={bench.workdir / 'cache'}",
                     "trainer.progress_bar=false"]
        started = time.perf_counter()
        loop = bench.keep(LoopUnderTest(to_settings(compose(overrides)), None, bench.workdir / f"colour_run_{side}"))
        decode_seconds = time.perf_counter() - started
        loop.warm_up()
        pipeline = bench.pipeline_contender(loop, 64 * 200 if bench.quick else 64 * 1000)
        training = bench.loop_contender("training", loop, 640 if bench.quick else 1920)
        run_rounds([training, pipeline], rounds)
        shape = f"{side}x{side}x3"
        results[shape] = {"images": count, "model": loop.settings.model.name,
                          "build_and_decode_seconds": decode_seconds, "training_median": training.median,
                          "pipeline_median": pipeline.median, "ratio": paired_ratio(pipeline.rates, training.rates)}
        log(f"  {shape}: training {training.median:.0f} images/s, pipeline {pipeline.median:.0f} images/s "
            f"({results[shape]['ratio']:.0f}x; target >= {PIPELINE_TARGET:.0f}x); {count} images decoded and the "
            f"run built in {decode_seconds:.1f} s")
    return results


def table(results: dict | None) -> list[str]:
    """docs/benchmarks.md's lines for the section."""
    if not results:
        return []
    lines = ["### Colour images from a folder (`data=folder`)", "",
             "Generated PNG folders decoded once into the cache; the default model (conv VAE, layers following "
             "the image size) against the Trainer's input iterator alone, gathering batches of 64 from the "
             "memory-mapped cache, in interleaved rounds.", ""]
    rows = [[f"{row['images']} of {shape}", f"{row['training_median']:.0f} images/s",
             f"{row['pipeline_median']:.0f} images/s",
             f"**{row['ratio']:.0f}×** ({markdown.met(row['ratio'], PIPELINE_TARGET)})",
             f"{row['build_and_decode_seconds']:.1f} s"]
            for shape, row in results.items()]
    return lines + markdown.table(["images", "training", "input pipeline", "pipeline / training (target ≥ 20×)",
                          "decode + build"], rows)
