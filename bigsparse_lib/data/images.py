"""Images from a local folder, as multi-label batches for ViT (the JFT stand-in at full scale).

Layouts (first match wins):
1. `labels_file` given (default: `labels.csv` in the folder if present): a CSV with a
   header `path,labels[,split]`; `path` relative to the folder, `labels` the class
   names separated by spaces (multi-label), `split` "train" or "eval".
2. `train/<class>/<image>` and one of `eval/`, `val/`, `validation/`, `test/` beside it.
3. `<class>/<image>`: one class per sub-folder.
Classes are the sorted names found; without a split column or split folders, an image
goes to eval when crc32(relative path) falls in the `eval_fraction` bucket, so the
two splits are disjoint and stable under adding files.

Preprocessing follows big_vision's ViT recipe in its simplest form: decode to RGB
(or L for 1 channel), resize to the model's image size, scale to [-1, 1]; train images
are flipped left-right with probability 1/2. Order: each epoch is a permutation of the
split's images drawn from (seed, split, epoch), so example g = index * batch_size + b is
a pure function of (seed, split, g) and no image repeats within an epoch.

TFDS directories are not read: TFDS's tfrecord/array_record payloads are
`tf.train.Example` protos, and tensorflow is not installed. Export the images to a
folder instead.
"""
from __future__ import annotations

import csv
import dataclasses
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bigsparse_lib.data.toy import split_id
from bigsparse_lib.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
EVAL_DIRS = ("eval", "val", "validation", "test")
_IMG_TAG = 13


@dataclasses.dataclass(frozen=True)
class ImageFolderSource:
    """path: the image folder. labels_file: multi-label CSV (see the module docstring).
    eval_fraction: share of images held out for eval when the layout has no split."""

    path: str
    labels_file: str | None = None
    eval_fraction: float = 0.05


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _holdout(rel: str, fraction: float) -> str:
    return "eval" if zlib.crc32(rel.encode()) % 10_000 < fraction * 10_000 else "train"


def index_folder(source: ImageFolderSource) -> tuple[list[str], list[tuple[str, list[str], str]]]:
    """(class names, [(file path, class names, split)]) for the folder."""
    root = Path(source.path)
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    labels_file = Path(source.labels_file) if source.labels_file else root / "labels.csv"
    items: list[tuple[str, list[str], str]] = []
    if source.labels_file or labels_file.is_file():
        if not labels_file.is_file():
            raise InputError(f"labels file not found: {labels_file}")
        with open(labels_file, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "labels"} <= set(reader.fieldnames):
                raise InputError(f"{labels_file}: header must hold 'path' and 'labels' columns")
            for lineno, row in enumerate(reader, 2):
                path = root / row["path"]
                if not path.is_file():
                    raise InputError(f"{labels_file}:{lineno}: image not found: {path}")
                split = (row.get("split") or "").strip() or _holdout(row["path"], source.eval_fraction)
                if split not in ("train", "eval"):
                    raise InputError(f"{labels_file}:{lineno}: split must be train or eval, got {split!r}")
                items.append((str(path), row["labels"].split(), split))
    else:
        eval_dir = next((root / d for d in EVAL_DIRS if (root / d).is_dir()), None)
        if (root / "train").is_dir() and eval_dir is not None:
            layout = [(root / "train", "train"), (eval_dir, "eval")]
        else:
            layout = [(root, None)]
        for folder, split in layout:
            for path in _images_under(folder):
                rel = path.relative_to(folder)
                if len(rel.parts) < 2:
                    raise InputError(f"image {path} is not inside a class sub-folder of {folder}")
                items.append((str(path), [rel.parts[0]],
                              split or _holdout(str(rel), source.eval_fraction)))
    if not items:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    classes = sorted({c for _, labels, _ in items for c in labels})
    return classes, items


def load_image(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """[H, W, C] float32 in [-1, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            x = np.asarray(im, dtype=np.float32)
    except OSError as e:
        raise InputError(f"cannot read image {path}: {e}") from None
    x = x.reshape(size[0], size[1], -1)
    if x.shape[-1] != channels:
        raise InputError(f"image {path} has {x.shape[-1]} channels after decoding, model wants {channels}")
    return x / 127.5 - 1.0


class ImageFolderStream:
    """Multi-label batches {"image": [B,H,W,C] float32, "labels": [B,K] float32} from a folder."""

    family = "vit"
    units_per_example = 1
    irreducible_loss = None

    def __init__(self, source: ImageFolderSource, *, num_classes: int, image_size, channels: int,
                 seed: int, split: str = "train"):
        self.source, self.seed, self.split = source, int(seed), split
        self._split_id = split_id(split)
        self.classes, items = index_folder(source)
        if len(self.classes) > num_classes:
            raise InputError(f"{source.path} has {len(self.classes)} classes, the model only {num_classes}")
        self.num_classes, self.channels = int(num_classes), int(channels)
        self.size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        self.items = [(p, labels) for p, labels, s in items if s == split]
        if not self.items:
            raise InputError(f"no {split} images in {source.path}")
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.zeros((len(self.items), self.num_classes), dtype=np.float32)
        for i, (_, labels) in enumerate(self.items):
            self.labels[i, [index[c] for c in labels]] = 1.0
        self._perm_cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            rng = np.random.default_rng([self.seed, self._split_id, epoch, _IMG_TAG])
            self._perm_cache = {epoch: rng.permutation(len(self.items))}
        return self._perm_cache[epoch]

    def examples(self, index: int, batch_size: int) -> np.ndarray:
        """Item numbers of the batch's examples."""
        g = np.arange(int(index) * batch_size, (int(index) + 1) * batch_size)
        epoch, offset = np.divmod(g, len(self.items))
        return np.array([self._perm(int(e))[o] for e, o in zip(epoch, offset)])

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        items = self.examples(index, batch_size)
        with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decodes without the GIL
            images = np.stack(list(pool.map(
                lambda i: load_image(self.items[i][0], self.size, self.channels), items)))
        if self.split == "train":
            rng = np.random.default_rng([self.seed, self._split_id, int(index), int(batch_size), _IMG_TAG])
            flip = rng.random(batch_size) < 0.5
            images[flip] = images[flip, :, ::-1]
        return {"image": images.astype(np.float32), "labels": self.labels[items]}
