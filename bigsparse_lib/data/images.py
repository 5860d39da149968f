"""Images from a local folder, as multi-label batches for ViT (the JFT stand-in at full scale).

Layouts (first match wins):
1. `labels_file` given (default: `labels.csv` in the folder if present): a CSV with a
   header `path,labels[,split]`; `path` relative to the folder, `labels` the class
   names separated by spaces (multi-label), `split` "train" or "eval".
2. `train/<class>/<image>` and one of `eval/`, `val/`, `validation/`, `test/` beside it.
3. `<class>/<image>`: one class per sub-folder.
4. A TFDS directory: a prepared dataset's version folder (holding `dataset_info.json` and
   `<name>-<split>.tfrecord-NNNNN-of-NNNNN` shards), or a folder above exactly one such.
   Records are `tf.train.Example`s with an encoded `image` and an int64 `label` or
   `labels` (multi-label); class names come from `label.labels.txt`/`labels.labels.txt`
   when present. Splits: `train`, and the first of `validation`, `val`, `eval`, `test`.
   The records are read without TensorFlow (`tfrecord_offsets`, `parse_example`); their
   CRCs are not checked, and TFDS's newer array_record format is not read.
Classes are the sorted names found; without a split column or split folders, an image
goes to eval when crc32(relative path) falls in the `eval_fraction` bucket, so the
two splits are disjoint and stable under adding files.

Preprocessing follows big_vision's ViT recipe in its simplest form: decode to RGB
(or L for 1 channel), resize to the model's image size, scale to [-1, 1]; train images
are flipped left-right with probability 1/2. Order: each epoch is a permutation of the
split's images drawn from (seed, split, epoch), so example g = index * batch_size + b is
a pure function of (seed, split, g) and no image repeats within an epoch.

"""
from __future__ import annotations

import csv
import dataclasses
import io
import struct
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


# ---- TFDS directories: TFRecord shards of tf.train.Example protos, read without TensorFlow ----
TFDS_EVAL_SPLITS = ("validation", "val", "eval", "test")


def tfrecord_offsets(path: str | Path) -> list[tuple[int, int]]:
    """(offset, length) of each record's payload in a TFRecord file.

    The format: per record, uint64 length (little-endian), uint32 masked CRC of the length,
    the payload, uint32 masked CRC of the payload. CRCs are not checked; a truncated file is
    an InputError naming it.
    """
    out, pos = [], 0
    with open(path, "rb") as f:
        data = f.read()
    while pos < len(data):
        if pos + 12 > len(data):
            raise InputError(f"{path}: truncated TFRecord header at byte {pos}")
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        if start + length + 4 > len(data):
            raise InputError(f"{path}: truncated TFRecord at byte {pos} (record of {length} bytes)")
        out.append((start, length))
        pos = start + length + 4
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message; value: int (varint) or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def parse_example(buf: bytes) -> dict[str, list]:
    """A serialized `tf.train.Example` -> {feature name: list of bytes | int | float}.

    Example{features=1: Features{feature=1: map<string, Feature>}}; Feature is one of
    bytes_list=1, float_list=2, int64_list=3, each {value=1: repeated}.
    """
    out: dict[str, list] = {}
    for n, _, features in _fields(buf):
        if n != 1:
            continue
        for m, _, entry in _fields(features):
            if m != 1:
                continue
            name, feature = "", b""
            for k, _, v in _fields(entry):
                if k == 1:
                    name = v.decode()
                elif k == 2:
                    feature = v
            values: list = []
            for kind, _, lst in _fields(feature):
                for j, wire, v in _fields(lst):
                    if j != 1:
                        continue
                    if kind == 1:
                        values.append(bytes(v))
                    elif kind == 2:  # floats: packed (wire 2) or one by one (wire 5)
                        values.extend(struct.unpack(f"<{len(v) // 4}f", v))
                    elif kind == 3 and wire == 0:
                        values.append(v - (1 << 64) if v >= 1 << 63 else v)
                    elif kind == 3:  # packed int64s
                        pos = 0
                        while pos < len(v):
                            x, pos = _varint(v, pos)
                            values.append(x - (1 << 64) if x >= 1 << 63 else x)
            out[name] = values
    return out


def _tfds_dir(root: Path) -> Path | None:
    """The TFDS version folder at or below root (None: not a TFDS directory)."""
    if (root / "dataset_info.json").is_file():
        return root
    found = sorted(p.parent for p in root.rglob("dataset_info.json"))
    if len(found) > 1:
        raise InputError(f"{root} holds several TFDS datasets or versions ({', '.join(map(str, found))}); "
                         "pass the one to read")
    return found[0] if found else None


def _read_record(ref: tuple[str, int, int]) -> bytes:
    shard, offset, length = ref
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(length)


def index_tfds(version_dir: Path) -> tuple[list[str], list[tuple[tuple[str, int, int], list[str], str]]]:
    """(class names, [((shard, offset, length), class names, split)]) of a TFDS directory."""
    if list(version_dir.glob("*.array_record*")):
        raise InputError(f"{version_dir}: TFDS array_record shards are not read; prepare the dataset with "
                         "file_format='tfrecord' or export the images to a folder")
    shards = {}
    for split in ("train", *TFDS_EVAL_SPLITS):
        files = sorted(version_dir.glob(f"*-{split}.tfrecord*"))
        if files:
            shards.setdefault("train" if split == "train" else "eval", files)
    if "train" not in shards:
        raise InputError(f"{version_dir}: no '*-train.tfrecord*' shards")
    names = next((version_dir / f for f in ("label.labels.txt", "labels.labels.txt")
                  if (version_dir / f).is_file()), None)
    class_names = names.read_text().split("\n") if names else None
    raw = []
    for split, files in shards.items():
        for shard in files:
            with open(shard, "rb") as f:
                data = f.read()
            for offset, length in tfrecord_offsets(shard):
                try:
                    ex = parse_example(data[offset:offset + length])
                except (ValueError, IndexError, UnicodeDecodeError) as e:
                    raise InputError(f"{shard}: record at byte {offset} is not a tf.train.Example ({e})") from None
                if not ex.get("image"):
                    raise InputError(f"{shard}: record at byte {offset} has no 'image' feature")
                label = ex.get("labels", ex.get("label"))
                if label is None:
                    raise InputError(f"{shard}: record at byte {offset} has no 'label' or 'labels' feature")
                raw.append(((str(shard), offset, length), [int(k) for k in label], split))
    top = max((k for _, ks, _ in raw for k in ks), default=-1)
    if class_names is None:
        class_names = [str(k) for k in range(top + 1)]
    class_names = [c for c in class_names if c.strip() != ""]
    if top >= len(class_names):
        raise InputError(f"{version_dir}: label {top} but only {len(class_names)} class names")
    # keep TFDS's label order: class k is column k
    items = [(ref, [class_names[k] for k in ks], split) for ref, ks, split in raw]
    return class_names, items


def index_folder(source: ImageFolderSource) -> tuple[list[str], list]:
    """(class names, [(file path or TFRecord reference, class names, split)]) for the folder."""
    root = Path(source.path)
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    tfds = None if source.labels_file else _tfds_dir(root)
    if tfds is not None:
        return index_tfds(tfds)
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


def load_image(path, size: tuple[int, int], channels: int) -> np.ndarray:
    """[H, W, C] float32 in [-1, 1]; `path` a file, or a (shard, offset, length) TFRecord reference."""
    from PIL import Image

    if isinstance(path, tuple):
        image = parse_example(_read_record(path))["image"][0]
        path, opened = f"{path[0]}@{path[1]}", io.BytesIO(image)
    else:
        opened = path
    try:
        with Image.open(opened) as im:
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
