"""Data streams for the training engine: `make(family, preset_or_config, seed=..., split=...)`.

Every stream is a `Dataset`: `batch(index, batch_size)` is a pure function of
(seed, split, index, batch_size), which is what makes resume exact; train and eval
streams are disjoint. Batches:

- ViT: {"image": float32 [B, H, W, C], "labels": float32 [B, K] multi-hot}.
- T5:  {"inputs": int32 [B, L_in], "targets": int32 [B, L_out]}, span-corrupted as T5
  (noise density 0.15, mean span 3), 0 = pad, 1 = EOS, sentinels counting down from
  the top id of the vocabulary.

The synthetic streams (`toy.ToyT5Stream`, `toy.ToyViTStream`) also have
`device_batch_fn(batch_size)`: a pure jax function fn(seed, split_id, index) -> batch that builds
the same batch on the device (jit/vmap/scan-compatible; `batch` is its host reference). Real data
(C4, image folders) stays on the host: callers check `hasattr(stream, "device_batch_fn")`.

`units_per_example` is what one example adds to D: 1 image (ViT) or L_in input tokens
(T5; the released data define D = steps * 128 * 512). `irreducible_loss` is the
Bayes loss of the stream when it is known (synthetic streams) and None for real data.

Sources (`source=`):
- None: the synthetic stream of the preset (smoke/toy; `toy.LANGUAGE_SPECS`,
  `toy.IMAGE_SPECS`); "full" needs a real source, or "synthetic" to force one.
- "synthetic", or a `toy.LanguageSpec` / `toy.ImageSpec`: a synthetic stream.
- a folder path, or `c4.C4Source` (T5) / `images.ImageFolderSource` (ViT): real data
  (for ViT, an image folder or a TFDS directory of TFRecord shards; `images`).
"""
from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np

from bigsparse_lib.data import c4, images, span_corruption, toy
from bigsparse_lib.data.c4 import C4Source, C4Stream, train_sentencepiece
from bigsparse_lib.data.images import ImageFolderSource, ImageFolderStream
from bigsparse_lib.data.toy import (IMAGE_SPECS, LANGUAGE_SPECS, ImageSpec, LanguageSpec,
                                    ToyT5Stream, ToyViTStream)
from bigsparse_lib.errors import InputError

from bigsparse_lib.vocab import FAMILIES, PRESETS

__all__ = ["make", "Dataset", "C4Source", "ImageFolderSource", "LanguageSpec", "ImageSpec",
           "train_sentencepiece", "config_shapes", "span_corruption", "toy", "c4", "images"]


class Dataset(Protocol):
    family: str
    split: str
    seed: int
    units_per_example: int
    irreducible_loss: float | None

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]: ...


# What a stream needs -> the model Config's field that holds it (models.t5.Config, models.vit.Config).
_FIELDS = {
    "vocab_size": "vocab_size", "inputs_length": "input_length", "targets_length": "target_length",
    "num_classes": "num_classes", "image_size": "image_size", "channels": "channels",
}


def _field(config: Any, key: str, default=None):
    value = getattr(config, _FIELDS[key], None)
    if value is not None:
        return value
    if default is not None:
        return default
    raise InputError(f"model config {type(config).__name__} has no field {_FIELDS[key]} (the {key} of its data)")


def config_shapes(family: str, config: Any) -> dict[str, Any]:
    """The shapes a stream needs, read from a model Config."""
    if family == "t5":
        return {k: int(_field(config, k)) for k in ("vocab_size", "inputs_length", "targets_length")}
    return {"num_classes": int(_field(config, "num_classes")),
            "image_size": _field(config, "image_size"),
            "channels": int(_field(config, "channels", default=3))}


def _resolve(family: str, preset_or_config) -> tuple[str | None, Any]:
    """(preset name or None, model Config)."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise InputError(f"preset must be one of {PRESETS}, got {preset_or_config!r}")
        from bigsparse_lib import models  # imported late: models does not need data

        return preset_or_config, models.get_family(family).BASES[preset_or_config]
    return None, preset_or_config


def _matching_preset(family: str, shapes: dict[str, Any]) -> str:
    """The preset whose base model has these data shapes (a width-scaled Config keeps
    them), so a sweep's scaled models get their preset's task; else "toy", or "smoke"
    for images too small for the toy task."""
    from bigsparse_lib import models  # imported late: models does not need data

    for name, base in models.get_family(family).BASES.items():
        if config_shapes(family, base) == shapes:
            return name
    if family == "vit":
        size = shapes["image_size"]
        h, w = (size, size) if np.isscalar(size) else size
        cell = IMAGE_SPECS["toy"].cell
        if h % cell or w % cell or (h // cell) * (w // cell) < 16:  # the toy task's 4x4 grid of cells
            return "smoke"
    return "toy"


def make(family: str, preset_or_config, *, seed: int, split: str = "train",
         source=None) -> Dataset:
    """The data stream for `family` ("vit" | "t5") at a preset name or a model Config.

    See the module docstring for `source`. Raises InputError for an unknown family,
    preset or split, bad paths, empty shards or a missing SentencePiece model.
    """
    if family not in FAMILIES:
        raise InputError(f"family must be one of {FAMILIES}, got {family!r}")
    toy.split_id(split)
    preset, config = _resolve(family, preset_or_config)
    shapes = config_shapes(family, config)
    if source is None and preset == "full":
        raise InputError(f"the full {family} preset needs source= (a "
                         f"{'C4 shard folder' if family == 't5' else 'image folder'}), "
                         "or source='synthetic'")
    if source is None or (isinstance(source, str) and source == "synthetic"):
        spec_preset = preset or _matching_preset(family, shapes)
        source = (LANGUAGE_SPECS if family == "t5" else IMAGE_SPECS)[spec_preset]
    if family == "t5":
        if isinstance(source, LanguageSpec):
            return ToyT5Stream(**shapes, seed=seed, split=split, spec=source)
        if isinstance(source, (str, os.PathLike)):
            source = C4Source(path=os.fspath(source))
        if isinstance(source, C4Source):
            return C4Stream(source, **shapes, seed=seed, split=split)
    else:
        if isinstance(source, ImageSpec):
            return ToyViTStream(**shapes, seed=seed, split=split, spec=source)
        if isinstance(source, (str, os.PathLike)):
            source = ImageFolderSource(path=os.fspath(source))
        if isinstance(source, ImageFolderSource):
            return ImageFolderStream(source, **shapes, seed=seed, split=split)
    raise InputError(f"source for {family} must be None, 'synthetic', a path, or a "
                     f"{'LanguageSpec/C4Source' if family == 't5' else 'ImageSpec/ImageFolderSource'}"
                     f"; got {source!r}")
