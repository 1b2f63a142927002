"""The user's own images end to end: a folder of colour images trained by vae-train, its pictures read
back from the event files in colour, its split recorded once and reused on resume; classes by folder
name; CIFAR-10's files through the same pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import compose
from test_cifar10 import file_contents, write_archive
from test_pictures import read_pictures
from vae_train.config import FolderDataConfig, PublishedDataConfig, to_settings
from vae_train.data.pipeline import ImagePipelines, load_dataset
from vae_train.data.sources import ReadContext
from vae_train.run.train import train

# Each class a colour, so a picture in grey would lose what tells them apart.
CLASS_COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 30)}
PER_CLASS = 12
SIDE = 32


def colour_images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in CLASS_COLOURS.items():
        (folder / name).mkdir(parents=True)
        for index in range(PER_CLASS):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
            pixels[index:index + 8, 4:12] = 255  # a white bar whose position varies
            Image.fromarray(pixels).save(folder / name / f"{index:02d}.png")
    return folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return colour_images(tmp_path_factory.mktemp("own") / "images")


def folder_overrides(root: Path, cache: Path) -> list[str]:
    return ["data=folder", f"data.root={root}", f"data.cache_dir={cache}", "data.test_fraction=0.25",
            "data.batch_size=9", "trainer.epochs=1", "trainer.progress_bar=false", "evaluation.iw_samples=0",
            "evaluation.manifold.size=3", "evaluation.samples=4", "evaluation.reconstructions=4",
            "evaluation.interpolations=1", "evaluation.interpolation_steps=3", "evaluation.traversal_dims=1",
            "evaluation.traversal_steps=3", "model.hidden_units=[16]", "model.decoder_hidden_units=[16]"]


@pytest.fixture(scope="module")
def colour_run(image_folder, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    run_dir = tmp_path_factory.mktemp("colour_run")
    overrides = folder_overrides(image_folder, run_dir.parent / "cache")
    return run_dir, train(to_settings(compose(overrides)), run_dir), overrides


def test_a_colour_folder_trains_and_reports_image_quality(colour_run):
    _, results, _ = colour_run
    assert results["finished"] and results["data"] == "folder"
    for figure in ("test_loss", "test_psnr", "test_ssim"):
        assert np.isfinite(results[figure]), figure
    assert results["test_psnr"] > 0 and -1 <= results["test_ssim"] <= 1


def test_the_split_is_recorded_stratified_by_class(colour_run):
    run_dir, _, _ = colour_run
    rows = (run_dir / "split.csv").read_text().splitlines()
    assert rows[0] == "path,label,split" and len(rows) == 1 + PER_CLASS * len(CLASS_COLOURS)
    for name in CLASS_COLOURS:
        assert sum(row.startswith(f"{name}/") and row.endswith(",test") for row in rows) == PER_CLASS // 4


def test_every_picture_is_in_colour(colour_run):
    run_dir, _, _ = colour_run
    pictures = {tag: events[-1][1] for tag, events in read_pictures(run_dir / "test").items()}
    drawn = {"reconstructions", "samples", "manifold", "interpolations", "traversals"}
    assert drawn <= {tag.rpartition("/")[2] for tag in pictures}
    for tag, picture in pictures.items():
        assert picture.shape[-1] == 3, tag
    reconstructions = next(picture for tag, picture in pictures.items() if tag.endswith("reconstructions"))
    # The originals' row shows the classes' colours, channel by channel.
    top = reconstructions[: reconstructions.shape[0] // 2].reshape(-1, 3).astype(int)
    assert np.abs(top[:, 0] - top[:, 2]).max() > 100


def test_the_projector_names_the_folder_classes(colour_run):
    run_dir, _, _ = colour_run
    metadata = next(run_dir.rglob("metadata.tsv")).read_text().splitlines()[1:]
    assert {line.split("\t")[1] for line in metadata} <= set(CLASS_COLOURS)


def test_a_resumed_run_keeps_its_recorded_split(colour_run, tmp_path):
    run_dir, _, overrides = colour_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    recorded = (copy / "split.csv").read_text()

    results = train(to_settings(compose([*overrides, "trainer.epochs=2", "seed=7"])), copy)

    assert results["epochs"] == 2
    assert (copy / "split.csv").read_text() == recorded  # another seed, yet the same split


def test_classes_are_chosen_by_folder_name(image_folder, tmp_path):
    config = FolderDataConfig(name="folder", root=str(image_folder), cache_dir=str(tmp_path), train_classes=["red"],
                              test_fraction=0.25, batch_size=4)
    dataset = load_dataset(config, ReadContext())
    red = dataset.class_names.index("red")
    assert set(dataset.train.labels.tolist()) == {red}
    assert len(set(dataset.test.labels.tolist())) == len(CLASS_COLOURS)  # the others are the anomalies


def test_cifar10_files_feed_the_pipeline_as_32x32_colour_images(tmp_path):
    write_archive(tmp_path / "cifar-10-python.tar.gz", file_contents())
    config = PublishedDataConfig(name="cifar10", root=str(tmp_path), verify_checksums=False, batch_size=2)
    dataset = load_dataset(config)
    assert dataset.image_shape == (32, 32, 3) and dataset.class_names[0] == "airplane"
    batch = next(iter(ImagePipelines(dataset, config, seed=0).train(0)))
    assert batch.shape == (2, 32, 32, 3) and batch.dtype == tf.float32
