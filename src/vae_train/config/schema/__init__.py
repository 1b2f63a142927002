"""Typed schemas of every config group, with their defaults: a module per group.

Each default is stated here once; a YAML option under ``conf/`` states only what differs from its
schema (``conf/data/mnist.yaml``: ``name`` and ``binarize``). Hydra merges each YAML file onto its
schema, so a typo, a wrong type or an unknown key fails at composition. Range checks that a type
cannot express live in ``__post_init__``: they run when :func:`~vae_train.config.store.to_settings`
turns the composed config into these objects, before any work starts.

No TensorFlow here: ``vae-train --help`` and ``--cfg job`` go through this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from vae_train.config.schema.common import GROUP_DEFAULTS, GROUP_SCHEMAS, MAX_LATENT_DIM, option_schema, require
from vae_train.config.schema.corruption import (
    CorruptionConfig,
    GaussianCorruptionConfig,
    MaskingCorruptionConfig,
    NoCorruptionConfig,
    PixelShareCorruptionConfig,
    SaltPepperCorruptionConfig,
)
from vae_train.config.schema.data import (
    Binarize,
    DataConfig,
    DataSplit,
    FolderDataConfig,
    Labels,
    MVTecDataConfig,
    PublishedDataConfig,
    Resize,
)
from vae_train.config.schema.evaluation import (
    AnomalyMap,
    Clustering,
    CombinedPart,
    EvaluationConfig,
    ExtraMetric,
    Interpolation,
    ManifoldConfig,
    ManifoldKind,
    Projection,
)
from vae_train.config.schema.model import (
    ConvAEConfig,
    ConvVAEConfig,
    DecoderDistribution,
    DenseAEConfig,
    DenseVAEConfig,
    Downsampling,
    IWAEConfig,
    ModelConfig,
    ReconstructionLoss,
    Reduction,
    VAEConfig,
)
from vae_train.config.schema.optimizer import AdamConfig, OptimizerConfig, RMSpropConfig, Schedule, SGDConfig
from vae_train.config.schema.trainer import OnNonFinite, Precision, TrainerConfig


@dataclass
class Config:
    # Any: each option of these groups merges onto its own schema (see model/*.yaml).
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    corruption: Any = MISSING
    trainer: TrainerConfig = MISSING
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # The size of the code.
    latent_dim: int = 2
    # Seeds Python, NumPy and TensorFlow, the data order and the VAE noise.
    seed: int = 42

    def __post_init__(self) -> None:
        require(0 < self.latent_dim <= MAX_LATENT_DIM,
                f"latent_dim must be an integer in 1..{MAX_LATENT_DIM}, got {self.latent_dim}.")
        dims = self.evaluation.traversal_dims
        require(dims is None or dims <= self.latent_dim,
                f"evaluation.traversal_dims={dims} exceeds latent_dim={self.latent_dim}: give 0..{self.latent_dim}, "
                "or null for min(latent_dim, 10).")


__all__ = [
    "GROUP_DEFAULTS", "GROUP_SCHEMAS", "MAX_LATENT_DIM", "AdamConfig", "AnomalyMap", "Binarize", "Clustering",
    "CombinedPart", "Config", "ConvAEConfig", "ConvVAEConfig", "CorruptionConfig", "DataConfig", "DataSplit",
    "DecoderDistribution", "DenseAEConfig", "DenseVAEConfig", "Downsampling", "EvaluationConfig", "ExtraMetric",
    "FolderDataConfig",
    "GaussianCorruptionConfig", "IWAEConfig", "Interpolation", "Labels", "ManifoldConfig", "ManifoldKind",
    "MaskingCorruptionConfig", "MVTecDataConfig", "ModelConfig", "NoCorruptionConfig", "OnNonFinite", "OptimizerConfig",
    "PixelShareCorruptionConfig", "Precision", "Projection", "PublishedDataConfig", "RMSpropConfig",
    "ReconstructionLoss", "Reduction", "Resize", "SGDConfig", "SaltPepperCorruptionConfig", "Schedule", "TrainerConfig",
    "VAEConfig", "option_schema",
]
