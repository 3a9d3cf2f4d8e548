"""Data sets for search and fine-tuning: named input arrays (first axis = samples), optional labels.

Sources: an .npz file with arrays named after the model inputs (or `<split>_<input>`, e.g.
`train_input`) and optional `labels` / `<split>_labels`; a folder of .npz files (concatenated) or of
.npy files (a single-input model's samples); a folder of images or one image (a single image input,
see `images` and `preprocess`); a user's function (`loader`); or synthetic inputs drawn from the input spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from darp_onnx.errors import BadInputError
from darp_onnx.load.index_inputs import index_bounds
from darp_onnx.load.inputs import (
    draw_values,
    graph_inputs,
    input_dtype,
    input_shape,
    synthetic_inputs,
    with_smooth_images,
)
from darp_onnx.training.dtypes import conform_inputs, conform_labels
from darp_onnx.training.images import image_files, images_note, is_image_file, load_images
from darp_onnx.training.loader import read_feeds
from darp_onnx.training.pictures import (
    PixelRange,
    default_preset,
    picture_inputs,
    pixel_ranges,
    synthetic_pictures,
)
from darp_onnx.training.preprocess import DEFAULT_PRESET, Preprocess, input_layout, parse_preprocess

SYNTHETIC_SOURCE = "<synthetic>"
TIMING_FEEDS = 4  # samples the latencies are timed on, in turn: some models' time depends on the values


@dataclass
class Dataset:
    """`micro_batches`: the model is not batch-major (a fixed batch of 1, outputs like [N, 6] or
    time-major), so `inputs[k][i]` is one whole feed and batches run one sample at a time."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = SYNTHETIC_SOURCE
    skipped: list[str] = field(default_factory=list)  # image files that did not decode, 'file: reason'
    preprocess: dict | None = None  # how images became arrays, for the report
    micro_batches: bool = False
    picture_ranges: dict[str, tuple[str, ...]] = field(default_factory=dict)  # synthetic: picture input -> ranges
    notes: list[str] = field(default_factory=list)  # what the user should know about how the data was read

    @property
    def mixed_ranges(self) -> bool:
        """Synthetic pictures in several value ranges (`pictures.UNNORMALISED_GRAPH`)."""
        return any(len(ranges) > 1 for ranges in self.picture_ranges.values())

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def synthetic(self) -> bool:
        return self.source == SYNTHETIC_SOURCE

    def subset(self, indices: np.ndarray) -> Dataset:
        labels = None if self.labels is None else self.labels[indices]
        return replace(self, inputs={k: v[indices] for k, v in self.inputs.items()}, labels=labels)

    def limited(self, max_samples: int | None, seed: int = 0) -> Dataset:
        """At most `max_samples` samples, a seeded random choice kept in their original order."""
        if max_samples is None or max_samples >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).permutation(len(self))[:max_samples]))

    def describe(self) -> dict:
        """Where the samples came from, for --json and the report."""
        return {"source": self.source, "samples": len(self), "labels": self.labels is not None,
                "skipped": len(self.skipped), "skipped_files": self.skipped[:10], "preprocess": self.preprocess,
                "notes": data_notes(self)}

    def feed(self, index: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Sample `index` as one whole feed (micro-batch data sets)."""
        return {k: torch.from_numpy(np.array(v[index], order="C", ndmin=0)).to(device) for k, v in self.inputs.items()}

    def first_feed(self) -> dict[str, np.ndarray]:
        """The first sample as one onnxruntime feed (batch 1)."""
        return {k: np.asarray(v[0]) if self.micro_batches else v[:1] for k, v in self.inputs.items()}

    def timing_feed(self, seed: int = 0) -> dict[str, np.ndarray]:
        """The feed latencies are measured on: the first sample, except that synthetic 4-D float inputs
        (images) become a smooth picture (`smooth_image`), since random-normal pixels mistime some kernels."""
        feed = self.first_feed()
        return feed if self.source != SYNTHETIC_SOURCE else with_smooth_images(feed, seed)

    def timing_feeds(self, count: int = TIMING_FEEDS, seed: int = 0) -> list[dict[str, np.ndarray]]:
        """The feeds latencies are measured on, taken in turn (`runtime.timer.feed_list`): the first `count`
        samples, synthetic 4-D float inputs made smooth pictures as in `timing_feed`."""
        feeds = [self.subset(np.array([i])).first_feed() for i in range(min(count, len(self)))]
        if self.source != SYNTHETIC_SOURCE:
            return feeds
        return [with_smooth_images(feed, seed + i) for i, feed in enumerate(feeds)]

    def as_micro_batches(self) -> Dataset:
        """The same samples as whole feeds of batch 1 (a batch-major data set for a model that is not)."""
        if self.micro_batches:
            return self
        return replace(self, inputs={k: v[:, None] for k, v in self.inputs.items()}, micro_batches=True)

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Two disjoint random parts, the first with `fraction` of the samples (at least one each)."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = min(max(int(round(len(self) * fraction)), 1), len(self) - 1)
        return self.subset(order[:cut]), self.subset(order[cut:])

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Endless stream of index batches, reshuffled every epoch."""
        while True:
            order = rng.permutation(len(self))
            for start in range(0, len(order), batch_size):
                yield order[start : start + batch_size]


# Fresh synthetic samples (a data-free prune's fidelity, `validate` without data) are drawn at seed + this, away
# from those a data-free prune trains on (seed, seed + 1): `validate` of a data-free prune of a Thai word segmenter
# drew the very samples it was fitted to and reported an error of 0.03 where fresh ones gave 0.44-0.58.
FRESH_SEED_OFFSET = 7919


def synthetic_dataset(model: onnx.ModelProto, *, samples: int = 64, seed: int = 0,
                      shapes: Mapping[str, tuple[int, ...]] | None = None, micro_batches: bool = False,
                      pixel_range: PixelRange | None = None) -> Dataset:
    """Random samples; `micro_batches` (forced by a scalar input, which has no batch axis): each sample is a
    whole feed at the given input shapes. Picture inputs get synthetic pictures (`pictures`; in `pixel_range`
    where given, else the graph's or the usual ranges), other float inputs standard normal values, token ids
    a new draw per sample; other integers keep one draw."""
    feeds = synthetic_inputs(model, batch=1, seed=seed, shapes=shapes)
    micro_batches = micro_batches or any(v.ndim == 0 for v in feeds.values())
    rng = np.random.default_rng(seed)
    picture_axes = picture_inputs(model, {k: tuple(v.shape) for k, v in feeds.items()})
    bounds = index_bounds(model)
    inputs = {}
    drawn_ranges = {}
    for name, example in feeds.items():
        shape = example.shape if micro_batches else example.shape[1:]
        if name in picture_axes:
            per_feed = example.shape[0] if micro_batches else 1  # pictures per sample
            ranges = (pixel_range,) if pixel_range is not None else pixel_ranges(model, name, picture_axes[name])
            drawn_ranges[name] = tuple(r.name for r in ranges)
            drawn = synthetic_pictures(samples * per_feed, example.shape[1:], picture_axes[name], ranges, rng,
                                       example.dtype)
            inputs[name] = drawn.reshape(samples, *shape)
        elif np.issubdtype(example.dtype, np.floating) or name in bounds:
            inputs[name] = draw_values((samples, *shape), example.dtype.type, rng, bounds.get(name))
        else:  # masks, flags, sample rates: one value for every sample
            inputs[name] = np.stack([example if micro_batches else example[0]] * samples)
    return Dataset(inputs, None, SYNTHETIC_SOURCE, micro_batches=micro_batches, picture_ranges=drawn_ranges)


def _pick(arrays: Mapping[str, np.ndarray], name: str, split: str | None) -> np.ndarray | None:
    for key in ([f"{split}_{name}"] if split else []) + [name]:
        if key in arrays:
            return arrays[key]
    return None


def _from_arrays(arrays: Mapping[str, np.ndarray], model: onnx.ModelProto, source: str,
                 split: str | None) -> Dataset:
    names = [v.name for v in graph_inputs(model)]
    inputs: dict[str, np.ndarray] = {}
    notes = []
    for name in names:
        value = _pick(arrays, name, split)
        if value is None:
            candidates = [k for k in arrays if not k.endswith("labels")]
            if len(names) == 1 and len(candidates) == 1:
                value = arrays[candidates[0]]
                notes.append(f"{source}: array '{candidates[0]}' feeds input '{name}' (the only array); name it "
                             f"'{name}' to say so")
            else:
                raise BadInputError(
                    f"{source}: no array for model input '{name}' (found {', '.join(sorted(arrays)) or 'none'}); "
                    f"name the array '{name}'" + (f" or '{split}_{name}'" if split else "")
                )
        inputs[name] = np.asarray(value)
    labels = _pick(arrays, "labels", split)
    return Dataset(inputs, None if labels is None else np.asarray(labels), source, notes=notes)


def load_dataset(path: str | Path, model: onnx.ModelProto, *, split: str | None = "train",
                 preprocess: str | Preprocess | None = None, max_samples: int | None = None,
                 input_shapes: Mapping[str, tuple[int, ...]] | None = None, seed: int = 0,
                 image_samples: int | None = None) -> Dataset:
    """Read an .npz file, a folder of .npz/.npy files or of images (or one image) and check it against the
    model's inputs; keep at most `max_samples` samples (a seeded random choice; for images without
    `max_samples`, at most `image_samples`)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such data file or folder; check --data")
    if is_image_file(path) or (path.is_dir() and not any(path.glob("*.np[yz]"))):
        dataset = _load_images(path, model, preprocess, max_samples or image_samples, input_shapes, seed)
        check_dataset(dataset, model)
        return dataset
    try:
        if path.is_dir():
            dataset = _load_folder(path, model, split)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                dataset = _from_arrays(dict(archive.items()), model, str(path), split)
        elif path.suffix == ".npy" and len(graph_inputs(model)) == 1:
            dataset = Dataset({graph_inputs(model)[0].name: np.load(path, allow_pickle=False)}, None, str(path))
        else:
            raise BadInputError(f"{path}: unknown data format; give an .npz file or a folder of .npz/.npy files")
    except (ValueError, OSError) as exc:
        raise BadInputError(f"{path}: cannot read data ({exc}); give a valid .npz file") from None
    dataset = dataset.limited(max_samples, seed)
    check_dataset(dataset, model)
    return dataset


def data_notes(dataset: Dataset) -> list[str]:
    """What prune and validate say before they use the data: how image files became inputs, arrays fed to an
    input of another name, integers cast to floats."""
    notes = [] if dataset.preprocess is None else [
        images_note(dataset.source, len(dataset), dataset.skipped, dataset.preprocess)]
    return notes + dataset.notes


def _single_input(model: onnx.ModelProto, what: str) -> onnx.ValueInfoProto:
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise BadInputError(f"{what}: images feed a model with one input, this one has {len(inputs)} "
                            f"({', '.join(v.name for v in inputs)}); use --data-loader FILE.py:FUNCTION")
    return inputs[0]


def _load_images(path: Path, model: onnx.ModelProto, preprocess: str | Preprocess | None, max_samples: int | None,
                 input_shapes: Mapping[str, tuple[int, ...]] | None, seed: int) -> Dataset:
    """Decode image files for the model's single input; without a `preprocess` the preset is the one the
    graph's own input normalisation expects (`pictures.default_preset`), else the default."""
    value = _single_input(model, str(path))
    shape = input_shape(value, 1, input_shapes)
    if preprocess is None:
        found = default_preset(model, value.name, input_layout(value.name, shape, input_dtype(value), "auto")
                               .channels_last)
        spec, chosen = parse_preprocess(found), (f"{found}: the graph's own normalisation" if found else
                                                 f"{DEFAULT_PRESET}: the default; the graph does not normalise "
                                                 "its input")
    else:
        spec, chosen = parse_preprocess(preprocess), f"{preprocess}: --preprocess"
    layout = input_layout(value.name, shape, input_dtype(value), spec.layout)
    files = [path] if path.is_file() else image_files(path)
    decoded = load_images(files, spec, layout, source=str(path), max_samples=max_samples, seed=seed)
    described = {**spec.describe(), "chosen": chosen, "size": f"{layout.height}x{layout.width}",
                 "kept_area": decoded.kept_area}
    if layout.channels == 1:  # decoded as grey whatever the preset's channel order (preprocess.image_to_array)
        described["channels"] = "grey"
    return Dataset({value.name: decoded.samples}, None, str(path), skipped=decoded.skipped, preprocess=described)


def load_from_loader(spec: str, model: onnx.ModelProto, *, max_samples: int | None = None) -> Dataset:
    """Samples from the user's `FILE.py:FUNCTION` (see `loader`), checked against the model's inputs."""
    values = graph_inputs(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in values}
    inputs, labels = read_feeds(spec, [v.name for v in values], ranks, max_samples=max_samples)
    dataset = Dataset(inputs, labels, spec)
    check_dataset(dataset, model)
    return dataset


def _load_folder(folder: Path, model: onnx.ModelProto, split: str | None) -> Dataset:
    npz = sorted(folder.glob("*.npz"))
    npy = sorted(folder.glob("*.npy"))
    if npz:
        parts = []
        for file in npz:
            with np.load(file, allow_pickle=False) as archive:
                parts.append(_from_arrays(dict(archive.items()), model, str(file), split))
        inputs = {k: np.concatenate([p.inputs[k] for p in parts]) for k in parts[0].inputs}
        has_labels = all(p.labels is not None for p in parts)
        labels = np.concatenate([p.labels for p in parts]) if has_labels else None
        notes = list(dict.fromkeys(n.replace(p.source, str(folder)) for p in parts for n in p.notes))
        return Dataset(inputs, labels, str(folder), notes=notes)
    if npy and len(graph_inputs(model)) == 1:
        samples = [np.load(f, allow_pickle=False) for f in npy]
        other = next((k for k, sample in enumerate(samples) if sample.shape != samples[0].shape), None)
        if other is not None:
            raise BadInputError(
                f"{folder}: {npy[0].name} holds an array of shape {samples[0].shape}, {npy[other].name} one of "
                f"{samples[other].shape}; each .npy file of a folder is one sample and all must have one shape: "
                "pad or cut them to one length (or give an .npz of windows)")
        return Dataset({graph_inputs(model)[0].name: np.stack(samples)}, None, str(folder))
    raise BadInputError(f"{folder}: holds no .npz (or, for a one-input model, .npy) files; check --data")


def stacks_whole_feeds(dataset: Dataset, model: onnx.ModelProto) -> bool:
    """Every array has one axis more than its input: whole feeds stacked along a first axis. A model without a
    batch axis (madmom's [frames, bins] spectrogram models) can be given its data no other way."""
    inputs = [v for v in graph_inputs(model) if v.name in dataset.inputs]
    return bool(inputs) and all(dataset.inputs[v.name].ndim == len(v.type.tensor_type.shape.dim) + 1 for v in inputs)


def _feed_samples_beside_whole_feeds(dataset: Dataset, model: onnx.ModelProto) -> None:
    """Where some arrays stack whole feeds (one axis more than an input without a batch axis) and the others
    hold one sample per row of an input with a batch axis, each of those rows becomes a whole feed of batch 1
    (a style transfer network's picture [1, 3, h, w] beside its style weights [26]: (48, 3, 256, 256) and
    (48, 26) were refused as neither samples first nor whole feeds)."""
    inputs = [v for v in graph_inputs(model) if v.name in dataset.inputs]
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in inputs}
    stacked = [v.name for v in inputs if dataset.inputs[v.name].ndim == rank[v.name] + 1]
    rows = [v for v in inputs if dataset.inputs[v.name].ndim == rank[v.name] and rank[v.name] > 0]
    if not stacked or len(stacked) + len(rows) != len(inputs):
        return
    first = [v.type.tensor_type.shape.dim[0] for v in rows]
    if not all(d.dim_param or d.dim_value in (0, 1) for d in first):
        return
    for value in rows:
        dataset.inputs[value.name] = dataset.inputs[value.name][:, None]
    dataset.notes.append(f"{dataset.source}: each row of {', '.join(repr(v.name) for v in rows)} is fed with the "
                         f"same row of {', '.join(repr(n) for n in stacked)} (a whole feed, its input has no batch "
                         "axis), one sample at a time")


def check_dataset(dataset: Dataset, model: onnx.ModelProto) -> None:
    """Shapes match the model's declared dims, sample counts agree, no NaN or Inf, labels are ints.
    Arrays are cast to the model's dtypes in place where nothing is lost (see `dtypes`)."""
    dataset.notes.extend(conform_inputs(dataset.inputs, model, dataset.source))
    dataset.labels = conform_labels(dataset.labels, dataset.source)
    counts = {len(v) for v in dataset.inputs.values()}
    if len(counts) != 1 or 0 in counts:
        raise BadInputError(
            f"{dataset.source}: inputs must have the same, non-zero number of samples (found {sorted(counts)})"
        )
    if not dataset.micro_batches:
        _feed_samples_beside_whole_feeds(dataset, model)
    dataset.micro_batches = dataset.micro_batches or stacks_whole_feeds(dataset, model)
    for value in graph_inputs(model):
        array = dataset.inputs[value.name]
        dims = value.type.tensor_type.shape.dim
        if array.ndim != len(dims) + int(dataset.micro_batches):
            raise BadInputError(
                f"{dataset.source}: array for input '{value.name}' has shape {array.shape}, the model expects "
                f"rank {len(dims)} (samples first), or rank {len(dims) + 1} for every input (whole feeds stacked)"
            )
        for axis, dim in enumerate(dims):
            size = array.shape[axis + 1] if dataset.micro_batches else array.shape[axis]
            if (axis > 0 or dataset.micro_batches) and dim.HasField("dim_value") and dim.dim_value > 0 and \
                    dim.dim_value != size:
                raise BadInputError(
                    f"{dataset.source}: array for input '{value.name}' has shape {array.shape}; axis "
                    f"{axis + int(dataset.micro_batches)} must be {dim.dim_value}"
                )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise BadInputError(f"{dataset.source}: input '{value.name}' contains NaN or Inf; clean the data")
    if dataset.labels is not None:
        labels = dataset.labels
        if not np.issubdtype(labels.dtype, np.integer):
            raise BadInputError(f"{dataset.source}: labels must be integers (class indices), got {labels.dtype}")
        if len(labels) != len(dataset):
            raise BadInputError(f"{dataset.source}: {len(labels)} labels for {len(dataset)} samples")
        if labels.min() < 0:
            raise BadInputError(f"{dataset.source}: labels must be non-negative class indices")
