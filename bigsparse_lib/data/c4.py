"""C4 from local shards, tokenised with SentencePiece, span-corrupted as T5 (App. A).

Shards are the published files `c4-train.00000-of-01024.json.gz` (and
`c4-validation.*`), one JSON object {"text", "timestamp", "url"} per line; plain `.json`
works too. As in T5's `span_corruption` preprocessor, the documents of a shard are
tokenised, concatenated without separators and cut into rows of
`random_spans_helper(inputs_length)` tokens (568 for 512 inputs); a short tail is
dropped. Each row is then span-corrupted (`span_corruption`).

Order: the stream walks the rows of all shards, epoch after epoch; each epoch visits the
shards and the rows within each shard in an order drawn from (seed, split, epoch).
Example g of a split (g = index * batch_size + b) is therefore a pure function of
(seed, split, g): exact resume. Within one epoch no row repeats; C4 holds ~156B T5 tokens,
beyond the paper's longest run (65B). The eval split reads `c4-validation.*`; if there
is none, it holds out the last train shard (then the train split does not read it).

Tokenisation happens lazily, one shard at a time (SentencePiece, several threads);
give `cache_dir` to keep the tokenised rows on disk (`.npy`, memory-mapped), so a resume
need not tokenise again.
"""
from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bigsparse_lib.data import span_corruption as sc
from bigsparse_lib.data.toy import split_id
from bigsparse_lib.errors import InputError

SHARD_GLOBS = {"train": "c4-train.*.json*", "eval": "c4-validation.*.json*"}
SPM_NAMES = ("spiece.model", "sentencepiece.model")
_C4_TAG = 11


@dataclasses.dataclass(frozen=True)
class C4Source:
    """Where the C4 shards and the SentencePiece model are.

    path: folder of shards. spm_model: the SentencePiece model file (default: spiece.model
    or sentencepiece.model in `path`). extra_ids: sentinel ids above the SentencePiece
    vocabulary (T5: 100). cache_dir: where tokenised shards are kept (None: memory only).
    """

    path: str
    spm_model: str | None = None
    extra_ids: int = 100
    cache_dir: str | None = None


def shard_paths(source: C4Source, split: str) -> list[str]:
    """The sorted shard files of a split; raises InputError naming the folder if none."""
    folder = Path(source.path)
    if not folder.is_dir():
        raise InputError(f"C4 shard folder not found: {folder}")
    train = sorted(glob.glob(str(folder / SHARD_GLOBS["train"])))
    valid = sorted(glob.glob(str(folder / SHARD_GLOBS["eval"])))
    if not train:
        raise InputError(f"no C4 train shards ({SHARD_GLOBS['train']}) in {folder}")
    if valid:
        return train if split == "train" else valid
    if len(train) < 2:
        raise InputError(f"{folder} has one train shard and no c4-validation.* shard: "
                         "need a second shard to hold out for eval")
    return train[:-1] if split == "train" else train[-1:]


def read_texts(path: str) -> list[str]:
    """The "text" field of every line of a json or json.gz shard.

    Every fault names the shard and, where there is one, the line: a byte that is not
    UTF-8, a corrupted or truncated gzip stream, a line that is not a JSON object with a
    string "text". Nothing is skipped: a shard either reads whole or not at all.
    """
    import zlib

    opener = gzip.open if path.endswith(".gz") else open
    texts = []
    lineno = 0
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(f"{path}:{lineno}: byte {raw[e.start]:#04x} at column {e.start + 1} "
                                     "is not UTF-8") from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{lineno}: not a JSON object ({e.msg} at column {e.colno})") from None
                if not isinstance(obj, dict) or "text" not in obj:
                    raise InputError(f"{path}:{lineno}: not a JSON object with a 'text' field")
                if not isinstance(obj["text"], str):
                    raise InputError(f"{path}:{lineno}: 'text' must be a string, got {type(obj['text']).__name__}")
                texts.append(obj["text"])
    except (OSError, EOFError, zlib.error) as e:
        where = f" after line {lineno}" if lineno else ""
        raise InputError(f"cannot read C4 shard {path}{where}: {e or type(e).__name__}") from None
    if not texts:
        raise InputError(f"C4 shard has no documents: {path}")
    return texts


def train_sentencepiece(shards: list[str], model_prefix: str, vocab_size: int = 32000, *,
                        max_sentences: int = 1_000_000) -> str:
    """Train a SentencePiece unigram model on the shards' texts, with T5's special ids
    (pad=0, eos=1, unk=2, no bos). Returns the path of the .model file."""
    import sentencepiece as spm

    texts = [t for path in shards for t in read_texts(path)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=model_prefix, vocab_size=vocab_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        character_coverage=0.9999, minloglevel=2)
    return model_prefix + ".model"


def load_spm(source: C4Source):
    """The SentencePiece processor; InputError naming the path if the model is missing."""
    import sentencepiece as spm

    if source.spm_model is not None:
        candidates = [Path(source.spm_model)]
    else:
        candidates = [Path(source.path) / name for name in SPM_NAMES]
    for path in candidates:
        if path.is_file():
            try:
                sp = spm.SentencePieceProcessor(model_file=str(path))
            except (OSError, RuntimeError) as e:
                raise InputError(f"cannot load SentencePiece model {path}: {e}") from None
            check_spm_complete(sp.serialized_model_proto(), str(path))
            return sp, str(path)
    raise InputError(f"SentencePiece model not found: {candidates[0]} (give C4Source(spm_model=...) "
                     "or train one with bigsparse_lib.data.c4.train_sentencepiece)")


def check_spm_complete(proto: bytes, path: str) -> None:
    """Refuse a SentencePiece model that parsed but is cut short.

    A model file is a protobuf: pieces (field 1) first, then trainer_spec (2) and
    normalizer_spec (3). Cut at a piece boundary it still parses, as a model with fewer
    pieces and no specs (training would then run on a fraction of the vocabulary). A whole
    model has both specs, and as many pieces as its trainer_spec's vocab_size.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString(proto)
    missing = [name for name in ("trainer_spec", "normalizer_spec") if not m.HasField(name)]
    if missing:
        raise InputError(f"SentencePiece model {path} is incomplete (truncated?): it holds {len(m.pieces)} "
                         f"pieces and no {' or '.join(missing)}")
    want = m.trainer_spec.vocab_size
    if want and len(m.pieces) != want:
        raise InputError(f"SentencePiece model {path} holds {len(m.pieces)} pieces, but its trainer_spec "
                         f"says vocab_size {want} (truncated or edited?)")


class C4Stream:
    """Span-corrupted C4 rows in the T5 batch format (see the module docstring)."""

    family = "t5"
    irreducible_loss = None
    _CACHE_SHARDS = 2

    def __init__(self, source: C4Source, *, vocab_size: int, inputs_length: int,
                 targets_length: int, seed: int, split: str = "train"):
        self.source, self.seed, self.split = source, int(seed), split
        self._split_id = split_id(split)
        self.shards = shard_paths(source, split)
        self.sp, self.spm_path = load_spm(source)
        self.vocab_size = self.sp.get_piece_size() + source.extra_ids
        if vocab_size < self.vocab_size:
            raise InputError(f"model vocab_size {vocab_size} < SentencePiece vocabulary "
                             f"{self.sp.get_piece_size()} + {source.extra_ids} sentinels")
        self.inputs_length = int(inputs_length)
        self.targets_length = int(targets_length)
        self.tokens_length = sc.fit_lengths(self.inputs_length, self.targets_length)
        self.units_per_example = self.inputs_length
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()
        self._counts: dict[int, int] = {}
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    # -- shards -> rows of tokens_length tokens
    def _cache_path(self, shard: int) -> Path | None:
        if self.source.cache_dir is None:
            return None
        path = self.shards[shard]
        key = hashlib.sha1(f"{os.path.abspath(path)}|{self.spm_path}|{self.tokens_length}".encode())
        return Path(self.source.cache_dir) / f"{Path(path).name}.{key.hexdigest()[:12]}.npy"

    def rows(self, shard: int) -> np.ndarray:
        """[n_rows, tokens_length] tokens of shard `shard` (tokenised on first use)."""
        if shard in self._rows:
            self._rows.move_to_end(shard)
            return self._rows[shard]
        cache = self._cache_path(shard)
        if cache is not None and cache.is_file():
            rows = np.load(cache, mmap_mode="r")
        else:
            ids = self.sp.encode(read_texts(self.shards[shard]), num_threads=os.cpu_count() or 1)
            flat = np.fromiter((t for doc in ids for t in doc), dtype=np.int32)
            n = len(flat) // self.tokens_length
            if n == 0:
                raise InputError(f"C4 shard {self.shards[shard]} holds {len(flat)} tokens, "
                                 f"fewer than one row of {self.tokens_length}")
            dtype = np.uint16 if self.vocab_size <= np.iinfo(np.uint16).max else np.int32
            rows = flat[: n * self.tokens_length].reshape(n, self.tokens_length).astype(dtype)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp.npy")
                np.save(tmp, rows)
                os.replace(tmp, cache)
        self._counts[shard] = len(rows)
        self._rows[shard] = rows
        while len(self._rows) > self._CACHE_SHARDS:
            self._rows.popitem(last=False)
        return rows

    def _count(self, shard: int) -> int:
        if shard not in self._counts:
            self.rows(shard)
        return self._counts[shard]

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self._split_id, epoch, _C4_TAG]).permutation(len(self.shards))

    def _perm(self, epoch: int, shard: int) -> np.ndarray:
        key = (epoch, shard)
        if key not in self._perms:
            rng = np.random.default_rng([self.seed, self._split_id, epoch, shard, _C4_TAG])
            self._perms[key] = rng.permutation(self._count(shard))
            while len(self._perms) > 2 * self._CACHE_SHARDS:
                self._perms.popitem(last=False)
        return self._perms[key]

    def locate(self, g: int, count: int = 1) -> list[tuple[int, int]]:
        """[(shard, row)] of examples g, g+1, ..., g+count-1 of this split."""
        epoch, offset = 0, int(g)
        if len(self._counts) == len(self.shards):  # all shards seen: skip whole epochs
            epoch, offset = divmod(offset, sum(self._counts.values()))
        out: list[tuple[int, int]] = []
        while True:
            for shard in map(int, self._order(epoch)):
                n = self._count(shard)
                while offset < n and len(out) < count:
                    out.append((shard, int(self._perm(epoch, shard)[offset])))
                    offset += 1
                if len(out) == count:
                    return out
                offset -= n
            epoch += 1

    def batch(self, index: int, batch_size: int) -> dict[str, np.ndarray]:
        g0 = int(index) * int(batch_size)
        where = self.locate(g0, batch_size)
        tokens = np.stack([self.rows(s)[r] for s, r in where]).astype(np.int32)
        rng = np.random.default_rng([self.seed, self._split_id, int(index), int(batch_size), _C4_TAG])
        return sc.span_corrupt(tokens, rng, vocab_size=self.vocab_size, inputs_length=self.inputs_length,
                               targets_length=self.targets_length)
