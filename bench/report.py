"""The benchmark's results as JSON, and as Markdown tables between two markers in
``docs/benchmarks.md`` (the hand-written analysis around them is left as it is)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.colour import table as colour_table
from bench.iw_bound import table as iw_bound_table
from bench.iwae_passes import table as iwae_passes_table
from bench.markdown import met, table
from bench.startup import table as startup_table

BEGIN = "<!-- bench:begin (written by `make bench`; edits between these markers are overwritten) -->"
END = "<!-- bench:end -->"


def _f(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def render(results: dict) -> str:
    lines: list[str] = []
    machine = results.get("machine", {})
    lines += [f"Run of {machine.get('date', '?')} ({results.get('command', 'make bench')}, "
              f"{results.get('total_seconds', 0):.0f} s in all).", ""]
    lines += table(["machine", ""], [
        ["CPU", f"{machine.get('cpu')} ({', '.join(machine.get('cpu_features', []))})"],
        ["cores", str(machine.get("cores"))],
        ["GPUs", str(machine.get("gpus"))],
        ["memory", f"{machine.get('memory_gb')} GB"],
        ["software", f"Python {machine.get('python')}, TensorFlow {machine.get('tensorflow')}, "
                     f"Keras {machine.get('keras')}"],
        ["load average at start / end", f"{results.get('load_start')} / {results.get('load_end')}"],
    ])

    head = results.get("headline")
    if head:
        lines += ["### The reference against vae-train's loop (recipe C, batch 64)", "",
                  f"{head['rounds']} interleaved rounds of {head['steps_per_window']} steps each "
                  f"(reference window, then ours and the matmul, in one process), after warm-up.", ""]
        lines += table(["", "images/s (median)", "window spread", "GFLOP/s", "of fp32 matmul peak"], [
            ["reference: Keras `Model.fit`, custom `train_step`", _f(head["reference"]["median"]),
             _pct(head["reference"]["spread"]), _f(head["reference"]["gflops"], 1),
             _pct(head["reference"]["peak_fraction"])],
            [f"vae-train loop (defaults: {head['ours']['levers']})", _f(head["ours"]["median"]),
             _pct(head["ours"]["spread"]), _f(head["ours"]["gflops"], 1), _pct(head["ours"]["peak_fraction"])],
        ])
        lines += [f"**Ratio, ours / reference: {head['ratio']:.2f}×** (median of per-round ratios; "
                  f"range {head['ratio_min']:.2f}–{head['ratio_max']:.2f}). "
                  f"Target ≥ 1.5×: {'met' if head['ratio'] >= 1.5 else 'not met'}.", "",
                  f"Model: {head['flops_per_image'] / 1e6:.1f} MFLOP per training image (3 × "
                  f"{head['flops_per_image'] / 3e6:.2f} MFLOP forward, from the layer shapes). Machine: "
                  f"fp32 matmul {_f(head['matmul_gflops'])} GFLOP/s, bf16 matmul "
                  f"{_f(head.get('matmul_bf16_gflops'))} GFLOP/s ({head['matmul_size']}² `tf.matmul`, medians of "
                  "the interleaved windows). Ours against the bf16 matmul rate, the ceiling of the arithmetic "
                  f"it uses when its precision is bfloat16: {_pct(head.get('ours_bf16_peak_fraction'))}.", ""]

    same = results.get("same_results")
    if same:
        lines += ["### Same results", "",
                  f"Both trained {same['steps']} steps from the same initial weights on the same batches; "
                  f"then both evaluated the same way (fp32, fixed noise) on {same['eval_images']} test images. "
                  "Loss in nats per image (reconstruction + KL summed); the objective is the recipe's "
                  "(KL averaged over latent dimensions).", ""]
        rows = [["reference", _f(same["reference"]["eval_loss"], 2), _f(same["reference"]["eval_objective"], 2),
                 _f(same["reference"]["train_loss_last"], 2)]]
        for run in same["ours"]:
            label = f"vae-train, {run['precision']}, noise seed {run['noise_seed']}"
            rows.append([label + (" (the precision lever)" if run["lever"] else ""), _f(run["eval_loss"], 2),
                         _f(run["eval_objective"], 2), _f(run["train_loss_last"], 2)])
        lines += table(["run", "test loss", "test objective", f"train loss, last {same['last']} steps"], rows)
        lines += [f"Difference reference − ours (mean of the seeds at the defaults): {same['difference']:+.2f} nats; "
                  "noise "
                  f"(spread of ours over noise seeds, and its tolerance): {same['noise']:.2f} / ±"
                  f"{same['tolerance']:.2f} nats. "
                  f"**{'Within noise' if same['within_noise'] else 'NOT within noise'}.**",
                  ""]

    levers = results.get("levers")
    if levers:
        lines += ["### Levers (recipe C, batch 64; each against the defaults, interleaved)", ""]
        rows = [[lever["name"], lever["setting"], _f(lever["median"]), f"{lever['ratio']:.2f}×", lever.get("note", "")]
                for lever in levers["variants"]]
        lines += table(["lever", "setting", "images/s", "vs defaults", ""], rows)

    layout = results.get("layout")
    if layout and "skipped" in layout:
        lines += ["### Layout", "", f"Not measured: {layout['skipped']}.", ""]
    elif layout:
        lines += ["### Layout (recipe C's convolutions alone, batch 64, float32; interleaved)", ""]
        rows = [[f"`{v['layout']}`", _f(v["median"]), f"{v['ratio']:.2f}×"] for v in layout["variants"]]
        lines += table(["data format", "images/s", "vs channels_last"], rows)

    threads = results.get("threads")
    if threads:
        lines += ["### Thread pools (recipe C, batch 64; one process per setting: the default before and after)", ""]
        rows = [[t["setting"], _f(t["median"]), f"{t['ratio']:.2f}×"] for t in threads["variants"]]
        lines += table(["intra-op / inter-op threads", "images/s", "vs TensorFlow's default"], rows)

    sweep = results.get("sweep")
    if sweep:
        lines += ["### Batch size × model (vae-train defaults, Fashion-MNIST)", "",
                  "Pipeline: the training input alone (the Trainer's own iterator, drained in a compiled loop).", ""]
        rows = [[row["model"], str(row["batch_size"]), row.get("precision", ""), _f(row["median"]),
                 _f(row["gflops"], 1), _pct(row["peak_fraction"]), _pct(row.get("bf16_peak_fraction")),
                 _f(row["pipeline"]), f"{row['pipeline_ratio']:.0f}×"]
                for row in sweep["rows"]]
        lines += table(["model", "batch", "precision", "images/s", "GFLOP/s", "of fp32 matmul", "of bf16 matmul",
                         "pipeline images/s", "pipeline / training"], rows)
        best = sweep.get("best", {})
        if best:
            lines += ["Best batch per model: " + "; ".join(
                f"{model} {row['batch_size']} ({_pct(row['peak_fraction'])} of the fp32 matmul rate)"
                for model, row in best.items()) + ".", ""]

    profile = results.get("profile")
    if profile:
        lines += [f"### Where a step's time goes ({profile['what']})", "",
                  f"TensorFlow profiler, {profile['steps']} steps: {profile['wall_ms_per_step']:.1f} ms per step "
                  f"wall time; TensorFlow's {profile['compute_threads']} compute threads busy "
                  f"{profile['busy_ms_per_step']:.1f} ms per step in all.", ""]
        busy = profile["busy_ms_per_step"]
        rows = [[group, f"{ms:.2f}", _pct(ms / busy)] for group, ms in profile["groups_ms_per_step"].items()]
        lines += table(["op group", "ms per step", "share"], rows)
        rows = [[op.replace("|", "/"), f"{ms:.2f}"] for op, ms in profile["top_ops_ms_per_step"].items()]
        lines += table(["costliest ops", "ms per step"], rows)

    rows = []
    pipeline = results.get("pipeline")
    if pipeline:
        rows.append(["input pipeline alone, recipe C data, batch 64", f"{_f(pipeline['median'])} images/s "
                     f"({pipeline['ratio']:.0f}× the training rate; target ≥ 20×)"])
    e2e = results.get("end_to_end")
    if e2e:
        rows.append(["`vae-train` end to end: " + e2e["command"],
                     f"last epoch {_f(e2e['images_per_second'])} images/s; {e2e['wall_seconds']:.1f} s in all; "
                     f"peak RSS {_f(e2e['peak_rss_mb'])} MB"])
    cli = results.get("cli")
    if cli:
        repeats = len(cli["help"]["times_s"])
        rows.append(["`vae-train --help`", f"{cli['help']['median_s']:.2f} s (median of {repeats})"])
        rows.append(["`vae-train --cfg job`", f"{cli['cfg_job']['median_s']:.2f} s; imports TensorFlow: "
                     f"{'yes' if cli['cfg_job_imports_tensorflow'] else 'no'}"])
    if results.get("peak_rss_mb"):
        rows.append(["peak RSS of the benchmark process after the reference-vs-ours phase",
                     f"{_f(results['peak_rss_mb'].get('headline'))} MB "
                     f"(whole benchmark: {_f(results['peak_rss_mb'].get('end'))} MB)"])
    if rows:
        lines += ["### Other figures", ""] + table(["", ""], rows)
    lines += _evaluation(results.get("evaluation")) + iw_bound_table(results.get("iw_bound"))
    lines += iwae_passes_table(results.get("iwae_passes"))
    lines += colour_table(results.get("colour"))
    lines += startup_table(results.get("startup"))
    lines += _whole_runs(results.get("whole_runs"))
    return "\n".join(lines).rstrip() + "\n"


def _evaluation(ev: dict | None) -> list[str]:
    if not ev:
        return []
    lines = ["### After the training step: the test figures and the IWAE bound", "",
             f"{ev['model']}; {ev['rounds']} interleaved rounds of training steps, the test figures (the whole "
             f"test set) and the IWAE bound (K = {ev['iw_samples']}, {ev['iw_images']} test images); the forward-pass "
             "rate is three times the training rate (a step is about three forward passes).", ""]
    lines += table(["", "rate (median)", "× the forward-pass rate"], [
        ["training loop", f"{_f(ev['train_median'])} images/s", "1/3"],
        ["test figures", f"{_f(ev['evaluation_median'])} images/s", f"{ev['evaluation_ratio']:.2f}"],
        ["IWAE bound", f"{_f(ev['iw_median'])} images × samples/s",
         f"**{ev['iw_ratio']:.2f}** (target ≥ 0.8: {met(ev['iw_ratio'], 0.8)})"],
    ])
    lines += [f"The same weights and noise (batches of 64): the bound as computed before, float32, "
              f"{ev['before']:.3f} nats in {ev['before_seconds']:.1f} s; today's {ev['after']:.3f} "
              f"({ev['difference']:+.4f}) in {ev['after_seconds']:.1f} s, {ev['speedup_over_before']:.1f}× faster; "
              f"today's with the decoder in bfloat16 {ev['after_bfloat16']:.3f} ({ev['difference_bfloat16']:+.4f}; "
              f"target within 0.05: {met(abs(ev['difference_bfloat16']), 0.05, above=False)}).", ""]
    return lines


def _whole_runs(runs: dict | None) -> list[str]:
    if not runs:
        return []
    lines = ["### Whole runs, process start to exit", "",
             f"Each recipe for {runs['epochs']} epochs, ours and its reference script, one after the other on the "
             "same data. Ours includes its per-epoch test figures, pictures, projector and checkpoints and the "
             "export at the end; the IWAE bound and the codes' figures, which the reference scripts do not "
             "compute, are off (`evaluation.iw_samples=0 evaluation.representation=false`).", ""]
    rows = []
    for name, title in (("recipe_a", "recipe A (TensorFlow tutorial loop)"), ("recipe_c", "recipe C (Keras `fit`)")):
        run = runs.get(name)
        if not run:
            continue
        ours, reference = run["ours"], run["reference"]
        if name == "recipe_a":
            theirs = reference["results"]["epochs"][-1]["test_elbo"]
            figure = f"test ELBO {ours['results']['test_elbo']:.2f} vs {theirs:.2f}"
        else:
            figure = f"test −ELBO {ours['results']['test_loss']:.2f} vs {reference['results']['test_loss']:.2f}"
        rows.append([title, f"{ours['wall_seconds']:.0f} s", f"{reference['wall_seconds']:.0f} s",
                     f"**{run['ratio']:.2f}×** ({met(run['ratio'], 1.5)})", figure,
                     f"{100 * ours['overhead']:.1f}% ({met(ours['overhead'], 0.10, above=False)})"])
    lines += table(["run", "ours", "reference", "reference / ours (target ≥ 1.5×)", "figures, ours vs reference",
                     "ours between epochs / epoch (target ≤ 10%)"], rows)
    default = runs["default"]
    lines += [f"The default `vae-train`, two epochs on MNIST: between epochs {default['between_epochs_seconds']:.1f} s "
              f"for {default['epoch_seconds']:.1f} s of training, **{100 * default['overhead']:.1f}%** (target ≤ 10%: "
              f"{met(default['overhead'], 0.10, above=False)}). Start-up, process start to the end of the first "
              f"training step: **{default['startup_seconds']:.1f} s** (target ≤ 5 s: "
              f"{met(default['startup_seconds'], 5.0, above=False)}), of which importing TensorFlow and finding its "
              f"devices {runs['tensorflow_start_seconds']:.1f} s. TensorFlow's C++ start-up lines on its console: "
              f"{default['console_start_up_lines']}.", ""]
    return lines


def write(results: dict, json_path: Path | None, markdown_path: Path | None) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    if markdown_path:
        text = markdown_path.read_text() if markdown_path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
        if BEGIN not in text or END not in text:
            text = text.rstrip() + f"\n\n## Latest run\n\n{BEGIN}\n{END}\n"
        before, rest = text.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        markdown_path.write_text(f"{before}{BEGIN}\n{render(results)}{END}{after}")
