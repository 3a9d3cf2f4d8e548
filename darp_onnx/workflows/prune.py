"""`prune()`: prepare -> score -> extract -> recover -> rewrite -> validate -> write.

Each stage is a function over a `PruneRun` (what the earlier stages produced) that can be called on
its own (the benchmarks do) and records its seconds in `run.timings`. `prune()` is their composition
over one frozen `PruneConfig`.
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from darp_onnx.cost import CostModel, count_graph, count_graph_params
from darp_onnx.cost.latency import LatencyModel, compare_latencies
from darp_onnx.errors import BadInputError, MissingInputShapeError, OptionError, ValidationFailedError
from darp_onnx.groups import ChannelAnalysis, analyse
from darp_onnx.load.control_flow import inline_static_ifs, refuse_data_dependent
from darp_onnx.load.ingest import ingest
from darp_onnx.load.input_shapes import name_output_dims, record_input_shapes, resolve_input_shapes
from darp_onnx.load.inputs import has_free_sizes
from darp_onnx.load.output_sources import linear_outputs
from darp_onnx.load.post_processing import PostProcessing, attach_post_processing, split_post_processing
from darp_onnx.load.preflight import check_loaded_model, check_run_memory, convertible_in
from darp_onnx.load.refusals import refuse_unprunable
from darp_onnx.load.stored_weights import restore_stored_types
from darp_onnx.proxy import ProxyModel, build_proxy
from darp_onnx.rewrite import rewrite
from darp_onnx.runtime import distributed
from darp_onnx.runtime.device import DeviceChoice, choose_device, exact_float32
from darp_onnx.runtime.session import kernel_channel_multiple, make_session
from darp_onnx.runtime.timer import time_sessions
from darp_onnx.search import BASELINES, Budget, extract_masks, make_budget
from darp_onnx.search.gates import attach_gates
from darp_onnx.search.latency_extract import extract_masks_by_latency
from darp_onnx.search.loss import TaskLoss, check_labels_fit
from darp_onnx.search.taylor import TAYLOR_BATCHES, run_darp, taylor_scores
from darp_onnx.training.batching import is_batch_major
from darp_onnx.training.data_shapes import shapes_from_data
from darp_onnx.training.dataset import (
    FRESH_SEED_OFFSET,
    SYNTHETIC_SOURCE,
    Dataset,
    data_notes,
    load_dataset,
    load_from_loader,
    synthetic_dataset,
)
from darp_onnx.training.decode_targets import FLOAT_TYPES, MAX_TARGET_BYTES, decoded_scores, softmax_logits
from darp_onnx.training.holdout import MIN_HELD_OUT, split_holdout
from darp_onnx.training.images import IMAGE_SAMPLES_DEFAULT
from darp_onnx.training.pictures import PixelRange, pictures_note, range_of_preprocess
from darp_onnx.training.preprocess import parse_preprocess
from darp_onnx.training.recovery import RecoveryRecipe
from darp_onnx.training.recovery import recover as recover_weights
from darp_onnx.training.steps import MAX_RELATIVE_STEP, StepLosses, lowered_note, pass_batch, predict
from darp_onnx.training.synthetic_check import (
    constant_outputs,
    one_decision_outputs,
    saturated_outputs,
    stand_in_inputs,
    stand_ins_note,
)
from darp_onnx.training.time_budget import DEFAULT_FINETUNE_STEPS, SMALLEST_BATCH, finetune_steps_left
from darp_onnx.validation.checks import (
    baseline_gaps,
    fidelity,
    fixed_classes,
    label_outputs,
    logit_outputs,
    run_batches,
    run_model,
)
from darp_onnx.validation.nonfinite import (
    blank_where_reference_nonfinite,
    nonfinite_note,
    samples_without_numbers,
)
from darp_onnx.validation.post_processing import check_whole, whole_feeds
from darp_onnx.workflows.advice import (
    check_drift,
    check_signal,
    larger_than_original,
    written_model_warnings,
)
from darp_onnx.workflows.common import Source, check_written, derived_path, open_source, output_path
from darp_onnx.workflows.config import (
    BudgetConfig,
    ExtractionConfig,
    IOConfig,
    PruneConfig,
    RecoveryConfig,
    ResourceConfig,
    SearchConfig,
    ValidationConfig,
    parse_channel_multiple,
    prune_config,
)
from darp_onnx.workflows.missing_shapes import refuse_if_nothing_prunable
from darp_onnx.workflows.multiple_speed import TimedCandidate, choose_for_speed, speed_note
from darp_onnx.workflows.outputs import check_paths_first, write_prune_outputs
from darp_onnx.workflows.plan import (
    SEARCH_PASSES,
    RunPlan,
    expected_total,
    plan_run,
    recovery_start_seconds,
    refuse_hopeless_budget,
    tail_seconds,
    usable_seconds,
)
from darp_onnx.workflows.results import Extraction, PruneResult, StageTimings, Validation

ProgressFn = Callable[[str, dict[str, float]], None]
Masks = dict[int, np.ndarray]


def _silent(stage: str, info: dict[str, float]) -> None:
    """The default progress callback: says nothing."""


@dataclass
class PruneRun:
    """What the stages of one run share; each stage fills its part."""

    config: PruneConfig
    source: Source
    out_path: Path | None
    input_shapes: dict[str, tuple[int, ...]]
    device: DeviceChoice
    channel_multiple: int
    progress: ProgressFn = _silent
    timings: StageTimings = field(default_factory=StageTimings)
    analysis: ChannelAnalysis | None = None
    cost_model: CostModel | None = None
    latency: LatencyModel | None = None
    budget: Budget | None = None
    dataset: Dataset | None = None
    proxy: ProxyModel | None = None
    reference: list[np.ndarray] | None = None  # the unpruned proxy's outputs on the dataset
    loss_fn: TaskLoss | None = None
    logits_of: dict[int, int] = field(default_factory=dict)  # a Softmax output's index -> its logits' (trained on)
    presearch_weights: dict[str, torch.Tensor] | None = None  # the proxy's weights before the search trained them
    observed_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # onnxruntime, at input_shapes
    started: float = field(default_factory=time.perf_counter)  # the time budget counts from here
    plan: RunPlan | None = None  # memory, samples, steps and batch (plan stage)
    search_loss: TaskLoss | None = None  # the loss on plan.search_data (reduced resolution)
    holdout: Dataset | None = None  # real samples kept out of training, for the reported fidelity
    original_bytes: int = 0  # the serialized model as given, before ingest
    original_params: int = 0  # its stored parameters (each shared tensor once, int8 ones too), as written ones count
    original_nodes: int = 0  # its nodes (with its post-processing), before ingest removes Identity and folds weights
    folded_weights: int = 0  # nodes computing weights from initializers that ingest folded (stored_weights)
    stored_types: dict[str, int] = field(default_factory=dict)  # float16 weights ingest widened, written narrow
    pixel_range: PixelRange | None = None  # data-free pictures in the range --preprocess gives, or None
    given_outputs: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)  # as loaded: their dims' names
    post: PostProcessing | None = None  # post-processing kept as it is, written back after the pruned network

    @property
    def model(self) -> onnx.ModelProto:
        return self.source.model


@dataclass
class Scores:
    """Per prunable group, one score per unit (higher: keep) and the keep importance derived from it."""

    scores: dict[int, np.ndarray]
    importance: dict[int, np.ndarray]
    search_steps: int  # steps the search ran (0 for a baseline)


@dataclass
class Recovered:
    outputs: list[np.ndarray]  # the masked, fine-tuned proxy's outputs on the dataset (exact float32)
    steps: int


def default_output_path(path: str | os.PathLike) -> Path:
    return derived_path(path, ".pruned")


SPEED_CHECK_RUNS = 15  # timed runs per candidate (taking turns) when 'auto' checks a finer multiple's speed
CLOSE_TO_BUDGET = 0.9  # an 'auto' channel multiple is kept when its cost is at least this share of the budget


def resolve_channel_multiple(value: int | str | None, ort_device: str) -> int:
    """An int >= 1 from an int, or from 'auto' or None (the default): the runtime's kernel block on
    `ort_device`, see `kernel_channel_multiple`."""
    parsed = parse_channel_multiple(value)
    return kernel_channel_multiple(ort_device) if parsed is None else parsed


# prepare ----------------------------------------------------------------------------------------------
def load(model_or_path: str | os.PathLike | onnx.ModelProto, config: PruneConfig, *,
         progress: ProgressFn | None = None) -> PruneRun:
    """Load the model, settle the output path, input shapes, device and channel multiple."""
    started = time.perf_counter()
    timings = StageTimings()
    with timings.stage("load"):
        io = config.io
        check_paths_first(model_or_path, output=io.output, write=io.write, force=io.force, suffix=".pruned",
                          data=io.data, report=io.report)
        source = open_source(model_or_path)
        input_shapes = resolve_input_shapes(source.model, dict(io.input_shapes), check_fixed=True)
        if io.data_loader is None:  # a sequence length (or other symbolic dim) the data fixes
            input_shapes = shapes_from_data(io.data, source.model, input_shapes)
        source = _without_static_ifs(source, input_shapes, progress or _silent)
        source, post, why = _network_of(source, input_shapes, progress or _silent)
        input_shapes = {k: v for k, v in input_shapes.items() if post is None or k in post.network_inputs}
        refuse_data_dependent(source.model, source.name)
        refuse_unprunable(source.model, source.name)  # quantized: say so, not just 'op not supported'
        check_loaded_model(source.model, source.name, allow_nonfinite=io.allow_nonfinite, unconvertible_why=why)
        out_path = output_path(source, io.output, write=io.write, force=io.force, suffix=".pruned")
        device = choose_device(config.device)
        multiple = resolve_channel_multiple(config.extraction.channel_multiple, device.ort_device)
    return PruneRun(config=config, source=source, out_path=out_path, input_shapes=input_shapes, device=device,
                    channel_multiple=multiple, progress=progress or _silent, timings=timings,
                    started=started, post=post)


def _without_static_ifs(source: Source, input_shapes: Mapping[str, tuple[int, ...]], progress: ProgressFn) -> Source:
    """`If`s decided by the input shapes replaced by their branch (see `load.control_flow`); any other `If` is
    refused in one line after `_network_of`, unless it is post-processing."""
    if not any(n.op_type == "If" for n in source.model.graph.node):
        return source
    inlined = inline_static_ifs(source.model, input_shapes, source.name)
    progress("note", {"message": inlined.describe()})
    return replace(source, model=inlined.model)


def _network_of(source: Source, input_shapes: Mapping[str, tuple[int, ...]], progress: ProgressFn
                ) -> tuple[Source, PostProcessing | None, str | None]:
    """The network before post-processing the proxy cannot run (NonMaxSuppression and what reads it), the
    post-processing (with every input's shape), and why there is no such split where nodes the proxy cannot
    run remain."""
    network, post, why = split_post_processing(source.model, convertible_in(source.model))
    if post is None:
        return source, None, why
    progress("note", {"message": post.describe()})
    return replace(source, model=network), replace(post, input_shapes=dict(input_shapes)), None


def analyse_costs(run: PruneRun) -> PruneRun:
    """Ingestion (node names, shared constants, every tensor's shape: darp_onnx.load.ingest), channel groups,
    the cost model, the layer timings (when latency-aware) and the budget."""
    with run.timings.stage("ingest"):
        _check_memory(run, run.input_shapes)  # the inputs alone, before onnxruntime runs the model at that size
        run.original_bytes = run.model.ByteSize()
        run.given_outputs = {o.name: o for o in run.model.graph.output}
        run.original_params = count_graph_params(run.model)
        run.original_nodes = len((run.model if run.post is None else run.post.original).graph.node)
        ingested = ingest(run.model, run.input_shapes, seed=run.config.seed, source=run.source.name)
        run.folded_weights = ingested.folded
        run.stored_types = ingested.stored_types
        run.source = replace(run.source, model=ingested.model)
        run.observed_shapes = ingested.shapes
        if ingested.folded:
            run.progress("note", {"message": f"{ingested.folded} nodes computed weights from initializers (Cast, "
                                             "Mul, DequantizeLinear: float16 or int8 weights; Transpose: a stored "
                                             "layout); they were computed once to prune them, and the written model "
                                             "stores float16 ones as float16 again, others as float32"})
    with run.timings.stage("analysis"):
        run.analysis = analyse(run.model)
        keep_unit_kinds(run.analysis, run.config.extraction.kept_kinds)
        keep_matching_groups(run.analysis, run.config.extraction.keep_groups)
    with run.timings.stage("shapes"):
        run.cost_model = CostModel(run.model, run.analysis, run.input_shapes, observed=run.observed_shapes)
        _check_memory(run, run.cost_model.shapes)
    if run.config.latency_aware:
        with run.timings.stage("latency_table"):
            run.progress("latency", {"device": run.device.ort_device})
            run.latency = LatencyModel(run.model, run.cost_model, device=run.device.ort_device,
                                       threads=run.config.extraction.latency_threads,
                                       channel_multiple=run.channel_multiple)
    run.budget = budget_for(run, run.config.budget)
    return run


def keep_unit_kinds(analysis: ChannelAnalysis, kinds: tuple[str, ...]) -> None:
    """Freeze the prunable groups of these unit kinds (`keep_kinds`): the search, the extraction and the
    cost model then leave them whole, e.g. an FFN-only prune of a transformer keeps heads and branches."""
    for group in analysis.prunable():
        if group.kind in kinds:
            group.frozen = f"kept: its unit kind '{group.kind}' is kept (keep_kinds, or keep_branches)"


def keep_matching_groups(analysis: ChannelAnalysis, patterns: tuple[str, ...]) -> None:
    """Freeze the prunable groups whose label (`inspect`'s 'group' column) matches one of the glob `patterns`
    (`--keep`): hama's recogniser computes its spectrogram with a fixed DFT convolution and mel filterbank,
    which the search pruned like learnt layers (48 of 201 frequency bins kept). A pattern that matches no
    prunable group is an error: a typo would otherwise keep nothing."""
    for pattern in patterns:
        matched = [g for g in analysis.prunable() if fnmatch.fnmatchcase(g.label, pattern)]
        if not matched:
            raise OptionError("keep_groups", f"{{option}} {pattern!r} matches no prunable group's label; "
                                             "`darp-onnx inspect MODEL` lists them")
        for group in matched:
            group.frozen = f"kept: its label matches {pattern!r} (keep_groups)"


def _check_memory(run: PruneRun, tensor_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """The synthetic data and one training batch of these tensors fit in free memory."""
    io = run.config.io
    check_run_memory(run.model, tensor_shapes, run.input_shapes,
                     batch_size=max([b for b in (run.config.search.batch_size, run.config.recovery.batch_size)
                                     if b] or [SMALLEST_BATCH]),  # None: planned later, at least this
                     synthetic_samples=io.synthetic_samples if io.data is None else 0)


def budget_for(run: PruneRun, budget: BudgetConfig) -> Budget:
    """The budget of `budget` on this run's model (checked: reachable at all)."""
    return make_budget(run.cost_model, metric=budget.metric, value=budget.value, latency_model=run.latency)


def _note_samples_left_out(run: PruneRun, offered: int) -> None:
    """Say when the time budget cut the user's training samples (a Khmer CRNN used 38 of 240 in silence)."""
    used = len(run.dataset)
    if run.dataset.synthetic or used >= offered:
        return
    minutes = run.plan.seconds / 60 if run.plan.seconds else 0.0
    note = (f"{run.dataset.source}: training on {used} of your {offered} samples (a seeded choice): passes over "
            f"more would not fit --time-budget {minutes:.1f} min; a longer --time-budget uses more")
    run.dataset = replace(run.dataset, notes=[*run.dataset.notes, note])
    run.progress("note", {"message": note})


def prepare_data(run: PruneRun, data: str | os.PathLike | Dataset | None = None) -> PruneRun:
    """The data set, the proxy, the plan (memory, samples, steps, batch) and the proxy's outputs (the
    distillation targets, or a check that labels fit)."""
    config = run.config
    with run.timings.stage("data"):
        run.dataset = _load_data(run, config.io.data if data is None else data)
        for note in data_notes(run.dataset):
            run.progress("note", {"message": note})
    with run.timings.stage("plan"):
        run.proxy = build_proxy(run.model, source=run.source.name, front_ends=True).to(run.device.torch_device)
        run.proxy.stored_types = dict(run.stored_types)
        run.proxy.eval()
        _add_softmax_logits(run)
        if run.dataset.labels is None:  # before the steps are timed: integer outputs alone carry no gradient
            _add_decoded_scores(run)
        if not is_batch_major(run.proxy, run.model, run.input_shapes, device=run.device.torch_device,
                              seed=config.seed):  # a fixed batch or outputs not indexed by sample
            run.dataset = _as_micro_batches(run)
        run.dataset, run.holdout = split_holdout(run.dataset, config.io.holdout, config.seed)
        offered = len(run.dataset)
        run.plan, run.dataset = plan_run(run, run.started)
        _note_samples_left_out(run, offered)
        run.plan.expected_s = expected_total(run.plan, len(run.dataset), config.validation.latency_runs)
        steps = run.plan.steps
        refuse_hopeless_budget(run.plan, len(run.dataset), resizable=has_free_sizes(run.source.model))
        ranking = config.search.method in BASELINES  # its search steps go to the fine-tune
        run.progress("plan", {"search_steps": 0 if ranking else steps.search_steps,
                              "finetune_steps": steps.finetune_steps + (steps.search_steps if ranking else 0),
                              "batch_size": steps.batch_size, "samples": len(run.dataset),
                              "time_budget_s": run.plan.seconds,
                              "step_seconds": None if np.isnan(steps.step_seconds) else steps.step_seconds,
                              "estimate_s": run.plan.expected_s, "over_budget": steps.over_budget})
    with run.timings.stage("reference_outputs"):
        batch = max(1, min(pass_batch(run.device.torch_device), 2 * run.plan.memory.max_batch))
        clock = time.perf_counter()
        run.reference = predict(run.proxy, run.dataset, batch_size=batch, device=run.device.torch_device)
        run.plan.note_full_pass(time.perf_counter() - clock, len(run.dataset))
        _drop_samples_without_numbers(run)
        if run.dataset.synthetic:
            _note_synthetic_data(run)
        holes = nonfinite_note(run.proxy.output_names, run.reference, run.dataset.synthetic)
        if holes is not None:
            run.progress("note", {"message": holes})
        if run.dataset.labels is not None:
            check_labels_fit(run.dataset.labels, run.reference, run.dataset.source)
            run.loss_fn = TaskLoss(labels=run.dataset.labels, reference=run.reference, logits_of=run.logits_of)
        else:
            _check_something_to_fit(run)
            run.loss_fn = TaskLoss(teacher=run.reference, logits_of=run.logits_of)
        small = run.plan.search_data
        if small is not None:
            run.search_loss = (TaskLoss(labels=small.labels, reference=run.reference, logits_of=run.logits_of)
                               if small.labels is not None else
                               TaskLoss(teacher=predict(run.proxy, small, batch_size=batch,
                                                        device=run.device.torch_device), logits_of=run.logits_of))
    return run


def _drop_samples_without_numbers(run: PruneRun) -> None:
    """Samples on which every output of the original is NaN or infinite are left out (see
    `samples_without_numbers`); none left is bad input."""
    dead = samples_without_numbers(run.reference)
    if not dead.any():
        return
    on = "synthetic samples" if run.dataset.synthetic else "of your samples"
    if dead.all():
        raise BadInputError(f"{run.source.name}: every output of the original model is NaN or infinite on all "
                            f"{len(dead)} {on}: there is nothing to fit; pass --data with samples the model takes")
    keep = np.flatnonzero(~dead)
    run.progress("note", {"message": f"{int(dead.sum())} of {len(dead)} {on} give NaN or infinite values in every "
                                     "output of the original model (an input out of its range, such as a "
                                     "negative noise level or frequency): they are left out"})
    run.dataset = run.dataset.subset(keep)
    run.reference = [r[keep] for r in run.reference]


def _check_something_to_fit(run: PruneRun) -> None:
    """Distillation needs a float output: integers (ids, labels) carry no gradient (sudachi's tagger with 400
    samples, its decoded scores too large to hold, ended in an autograd error inside the search)."""
    declared = [o.type.tensor_type.elem_type for o in run.model.graph.output]
    if len(run.proxy.output_names) > len(declared) or any(t in FLOAT_TYPES or t == 0 for t in declared):
        return  # decoded scores added after the graph's outputs, or a float (or undeclared) output
    names = ", ".join(f"'{o.name}'" for o in run.model.graph.output)
    raise BadInputError(f"{run.source.name}: every output ({names}) holds integers and no float scores behind "
                        "them could be held for your samples: darp-onnx has nothing to fit; export the model with "
                        "its scores (the logits before ArgMax) as an output, or give fewer samples")


def _add_softmax_logits(run: PruneRun) -> None:
    """Train on the logits of Softmax outputs in their place (`training.decode_targets.softmax_logits`). Like
    the decoded scores, they come after the graph outputs, which every check zips against."""
    logits = softmax_logits(run.model, run.observed_shapes)
    run.proxy.add_outputs(list(logits.values()))
    names = run.proxy.output_names
    run.logits_of = {names.index(out): names.index(source) for out, source in logits.items()
                     if out in names and source in names}


def _add_decoded_scores(run: PruneRun) -> None:
    """Distil the scores an in-graph ArgMax/TopK decodes as well (`training.decode_targets`); they come after
    the graph outputs, which every check zips against, so the checks see the graph's own outputs only."""
    names, fit = decoded_scores(run.model, run.observed_shapes, len(run.dataset))
    added = run.proxy.add_outputs(names)
    if not added:
        return
    run.progress("note", {"message": f"the graph decodes {', '.join(repr(n) for n in added)} in itself "
                                     "(ArgMax/TopK); distillation also fits those scores"})
    if fit < len(run.dataset):  # sudachi's tagger: 3.9 MB of scores a sample, 400 samples given
        run.progress("note", {"message": f"those scores are too large to hold for {len(run.dataset)} samples "
                                         f"({MAX_TARGET_BYTES // 2**20} MB at most): {fit} of them (a seeded "
                                         "choice) are used"})
        run.dataset = run.dataset.limited(fit, run.config.seed)


def _note_synthetic_data(run: PruneRun) -> None:
    """Say what the synthetic pictures are, and when the outputs do not vary or a score stays empty on them."""
    stand_ins = stand_ins_note(stand_in_inputs(run.model, list(run.dataset.picture_ranges)))
    constant = constant_outputs(run.model, run.reference, run.dataset.inputs)
    chosen_by = "as --preprocess asks" if run.pixel_range is not None else None
    for message in (pictures_note(run.dataset.picture_ranges, chosen_by), stand_ins, constant,
                    saturated_outputs(run.model, run.reference), one_decision_outputs(run.model, run.reference)):
        if message is not None:
            run.progress("note", {"message": message})


def _as_micro_batches(run: PruneRun) -> Dataset:
    """The data set as whole feeds. Synthetic samples are drawn again at the full input shapes: an input
    whose first axis is not the batch (a recurrent state [2, 1, 128]) cannot be cut into samples."""
    if run.dataset.source == SYNTHETIC_SOURCE and not run.dataset.micro_batches:
        return synthetic_dataset(run.model, samples=len(run.dataset), seed=run.config.seed,
                                 shapes=run.input_shapes, micro_batches=True, pixel_range=run.pixel_range)
    return run.dataset.as_micro_batches()


def _load_data(run: PruneRun, data: str | os.PathLike | Dataset | None) -> Dataset:
    """The data the options name: a Dataset, a path (.npz, folders, images), a loader function, or synthetic."""
    io, seed = run.config.io, run.config.seed
    if io.data_loader is not None:
        return load_from_loader(io.data_loader, run.model, max_samples=io.max_samples)
    if data is None:
        if io.preprocess is not None:
            spec = parse_preprocess(io.preprocess)
            run.pixel_range = range_of_preprocess(f"the range of --preprocess {io.preprocess}", spec.scale, spec.mean,
                                                  spec.std)
        return synthetic_dataset(run.model, samples=io.max_samples or io.synthetic_samples, seed=seed,
                                 shapes=run.input_shapes, pixel_range=run.pixel_range)
    if isinstance(data, Dataset):
        return data.limited(io.max_samples, seed)
    return load_dataset(data, run.model, preprocess=io.preprocess, max_samples=io.max_samples,
                        input_shapes=run.input_shapes, seed=seed, image_samples=IMAGE_SAMPLES_DEFAULT)


def prepare(model_or_path: str | os.PathLike | onnx.ModelProto, config: PruneConfig, *,
            progress: ProgressFn | None = None) -> PruneRun:
    """load -> analyse_costs -> prepare_data."""
    torch.manual_seed(config.seed)
    loaded = load(model_or_path, config, progress=progress)
    try:
        analysed = analyse_costs(loaded)
    except MissingInputShapeError:
        refuse_if_nothing_prunable(loaded.model, loaded.input_shapes, loaded.source.name, config.seed)
        raise
    run = prepare_data(analysed)
    run.progress("start", {"groups": len(run.analysis.prunable()), "budget_fraction": run.budget.fraction})
    return run


# score, extract, recover --------------------------------------------------------------------------
def score(run: PruneRun) -> Scores:
    """The DARP gate search (needs `prepare_data`) or a baseline's scores."""
    search = run.config.search
    with run.timings.stage("search"):
        if search.method == "darp":
            planned = run.plan.steps if run.plan is not None else None
            darp = search.darp(run.config.seed, steps=planned and planned.search_steps,
                               batch_size=planned and planned.batch_size)
            small = run.plan is not None and run.plan.search_data is not None
            run.progress("stage", {"name": "search", "eta_s": _eta(run)})
            run.presearch_weights = {k: v.detach().clone() for k, v in run.proxy.state_dict().items()}
            result = run_darp(run.proxy, run.analysis, run.cost_model, run.budget,
                              run.plan.search_data if small else run.dataset,
                              run.search_loss if small else run.loss_fn, darp, device=run.device.torch_device,
                              on_step=lambda rec: run.progress("search", rec), deadline=_search_deadline(run))
            if result.diverged:
                run.progress("note", {"message": f"the search stopped after {darp.steps - result.skipped} of its "
                                                 f"{darp.steps} steps: its loss diverged (the weights before the "
                                                 "step that blew up are kept, and the channels are chosen from the "
                                                 "logits as they were); a lower --search-lr may let it run"})
            importance = {g: 0.5 * (1.0 + np.tanh(s / 2.0)) for g, s in result.scores.items()}  # keep probabilities
            return Scores(result.scores, importance, darp.steps - result.skipped)
        if search.method == "taylor":  # its gradient passes count as steps
            planned = run.plan.steps if run.plan is not None else None
            total = (planned.search_steps + planned.finetune_steps if planned is not None else
                     (search.steps or 200) + (run.config.recovery.steps or DEFAULT_FINETUNE_STEPS))
            batch = planned.batch_size if planned is not None else (search.batch_size or 32)
            batches = min(TAYLOR_BATCHES, total)
            scores = taylor_scores(run.proxy, run.analysis, run.dataset, run.loss_fn, batches=batches,
                                   batch_size=batch, seed=run.config.seed, device=run.device.torch_device)
            return Scores(scores, scores, batches)
        scores = BASELINES[search.method](run.model, run.analysis, run.config.seed)
        return Scores(scores, scores, 0)


def extract(run: PruneRun, scores: Scores, *, budget: Budget | None = None,
            options: ExtractionConfig | None = None) -> Extraction:
    """Masks that meet the budget: rank order, or latency-aware (needs the layer timings)."""
    options = options or run.config.extraction
    budget = budget or run.budget
    multiple = (run.channel_multiple if options == run.config.extraction
                else resolve_channel_multiple(options.channel_multiple, run.device.ort_device))
    if parse_channel_multiple(options.channel_multiple) is not None:
        return _extract_at(run, scores, budget, options, multiple)
    return _extract_auto(run, scores, budget, options, multiple)


def _extract_auto(run: PruneRun, scores: Scores, budget: Budget, options: ExtractionConfig,
                  multiple: int) -> Extraction:
    """'auto': the kernel block where it meets the budget closely; else half of it, down to 1. Widths rounded to
    a coarse block can land far under the budget (magika: one 64-channel group at 50% MACs keeps 32 channels,
    50.03% with the frozen layers, so a multiple of 16 keeps 16: 25%), which costs accuracy and, at a fixed
    overhead per layer, speed per MAC removed; the largest multiple within CLOSE_TO_BUDGET of it wins, or the
    closest."""
    best: Extraction | None = None
    found_at: list[Extraction] = []
    while True:
        try:
            found = _extract_at(run, scores, budget, options, multiple)
        except OptionError as exc:
            if multiple == 1 or exc.parameter != budget.option:
                if best is not None:
                    return _fast_enough(run, found_at, best)
                raise
        else:
            found_at.append(found)
            if best is None or budget.cost(found.masks) > budget.cost(best.masks):
                best = found
            if budget.cost(found.masks) >= CLOSE_TO_BUDGET * budget.limit or multiple == 1:
                return _fast_enough(run, found_at, best)
        multiple //= 2
        run.progress("note", {"message": f"channel multiple 'auto': the budget is unreachable or far undershot at "
                                         f"{multiple * 2} channels, trying {multiple}"})


def _fast_enough(run: PruneRun, found: list[Extraction], chosen: Extraction) -> Extraction:
    """`chosen`, unless it came from a finer multiple than another candidate and onnxruntime times it slow for
    its MACs (`multiple_speed`); the coarsest candidate is never timed."""
    if len(found) < 2 or chosen is found[0]:
        return chosen
    models = [run.model] + [rewrite(run.model, run.analysis, e.masks) for e in found]
    feed = run.dataset.timing_feed() if run.dataset is not None else {k: v[:1] for k, v in _feeds(run).items()}
    with run.timings.stage("extraction"):
        sessions = [make_session(m, run.device.ort_device, threads=run.config.extraction.latency_threads)
                    for m in models]
        original_ms, *times = time_sessions(sessions, feed, runs=SPEED_CHECK_RUNS, rounds=SPEED_CHECK_RUNS)
    full = run.cost_model.full_macs
    timed = [TimedCandidate(e.channel_multiple, run.cost_model.macs(e.masks) / full, ms)
             for e, ms in zip(found, times, strict=True)]
    preferred = next(t for t in timed if t.multiple == chosen.channel_multiple)
    kept = choose_for_speed(timed, original_ms, chosen.channel_multiple)
    if kept is preferred:
        return chosen
    run.progress("note", {"message": speed_note(kept, preferred, original_ms)})
    return next(e for e in found if e.channel_multiple == kept.multiple)


def _extract_at(run: PruneRun, scores: Scores, budget: Budget, options: ExtractionConfig,
                multiple: int) -> Extraction:
    ranked, importance = scores.scores, scores.importance
    with run.timings.stage("extraction"):
        if not (options.latency_aware or budget.measure.needs_latency):
            masks = extract_masks(ranked, run.cost_model, budget, channel_multiple=multiple)
            return Extraction("score", multiple, masks)
        latency = run.latency
        if latency is None:
            raise ValueError("a latency-aware extraction needs the layer timings: a config with latency_aware")
        one = run.dataset.timing_feed() if run.dataset is not None else {k: v[:1] for k, v in _feeds(run).items()}

        def measure(candidates):
            rewritten = [rewrite(run.model, run.analysis, m) for m in candidates]
            return compare_latencies(rewritten, one, device=run.device.ort_device,
                                     threads=run.config.extraction.latency_threads)

        chosen = extract_masks_by_latency(importance, run.cost_model, latency, budget, channel_multiple=multiple,
                                          measure=measure, latency_weight=options.latency_weight)
        return Extraction(
            ranking=f"latency-aware ({chosen.chosen})", channel_multiple=multiple, masks=chosen.masks,
            latency_device=run.device.ort_device, latency_measurements=latency.measurements,
            latency_untimed_nodes=latency.untimed, estimated_latency_ms_before=round(latency.full_ms, 4),
            estimated_latency_ms_after=round(latency.estimate(chosen.masks), 4),
            candidates={k: {m: round(v, 4) for m, v in c.items()} for k, c in chosen.candidates.items()})


def _feeds(run: PruneRun) -> dict[str, np.ndarray]:
    if run.dataset is not None:
        return run.dataset.inputs
    return synthetic_dataset(run.model, samples=1, seed=run.config.seed, shapes=run.input_shapes).inputs


def recover(run: PruneRun, scores: Scores, masks: Masks) -> Recovered:
    """Fine-tune the proxy with the hard masks (a baseline also gets the search steps it did not use),
    then its outputs in exact float32: what the rewritten model must reproduce."""
    steps, batch, step_seconds = _recovery_steps(run, scores)
    with run.timings.stage("finetune"):
        run.progress("stage", {"name": "finetune", "steps": steps, "eta_s": _eta(run, steps, step_seconds)})
        handle = attach_gates(run.proxy, run.analysis)
        try:
            untuned = _weights_the_search_left(run, handle, masks, steps)  # kept where the fine-tune harms
            untrained = {k: v.detach().clone() for k, v in run.proxy.state_dict().items()}
            loss_before = _loss_of(run, untuned) if untuned is not None else None
            handle.clear()  # recovery initialises its BatchNorm on the unpruned proxy, then sets the masks
            deadline = _finetune_deadline(run)
            outputs, losses = _recover_once(run, handle, masks, steps, batch, deadline)
            if losses.diverged:  # training.steps.DivergenceGuard stopped it
                run.progress("note", {"message": _diverged_note(losses, steps)})
            elif losses.ran() < steps:  # the schedule followed the clock: slower steps, fewer of them
                run.progress("note", {"message": f"the fine-tune ran {losses.ran()} of its {steps} steps: they ran "
                                                 "slower than planned, and its schedule follows the clock to end "
                                                 "within --time-budget"})
            if losses.lowered:
                run.progress("note", {"message": lowered_note(losses.lowered)})
            steps = min(steps, losses.ran())
            harm = _fine_tune_harm(run, outputs, loss_before) if steps > 0 else None
            if harm is not None:  # the masked model as it was
                run.progress("note", {"message": f"the fine-tune {harm}; kept the pruned weights without it "
                                                 f"({steps} steps dropped)"})
                run.proxy.load_state_dict(untrained)
                steps = 0
                outputs = untuned
        finally:
            handle.remove()
    return Recovered(outputs, steps)


# With real samples the search's weights go on to the fine-tune unless their loss under the chosen masks is more than
# this many times that of the weights before the search. Measured before the fine-tune (and before BatchNorm is
# re-estimated) the loss misjudges them: the sample ResNet at 15% MACs had 1.77x the loss after its search and still
# ended 1.8 points better for keeping them (0.985 against 0.967; stop 36), while HED's wrecked weights (error 1.000 on
# real crops) had 2.4x. Data-free they go back whenever the weights before fit better: trained on synthetic inputs,
# they drift from what the original knows of its data (at 2x, PP-OCRv4's recogniser at 70% MACs went from an error
# of 0.38 to 1.00 in the corpus run, with 3 fine-tune steps).
SEARCH_WEIGHTS_LOSS_FACTOR = 2.0


def _weights_the_search_left(run: PruneRun, handle, masks: Masks, steps: int) -> list[np.ndarray] | None:
    """The masked outputs with the weights the search trained, or with the weights before it where those fit the
    data far better (with real samples: SEARCH_WEIGHTS_LOSS_FACTOR times; data-free: better at all; then put back,
    with a note): HED (a VGG without BatchNorm fed 0-255 pixels less the mean) came out of a search at the default
    rates with an error of 1.000 on real crops, where its own weights under the same masks kept the edges. Costs a
    pass over the data, two after a search; none for a baseline."""
    before, run.presearch_weights = run.presearch_weights, None  # held no longer than needed
    if before is None:
        return _masked_outputs(run, handle, masks) if steps > 0 else None
    searched_weights = {k: v.detach().clone() for k, v in run.proxy.state_dict().items()}
    searched = _masked_outputs(run, handle, masks)
    run.proxy.load_state_dict(before)
    kept = _masked_outputs(run, handle, masks)
    loss_searched, loss_kept = _loss_of(run, searched), _loss_of(run, kept)
    factor = 1.0 if run.dataset.synthetic else SEARCH_WEIGHTS_LOSS_FACTOR
    far_worse = loss_kept * factor < loss_searched or not math.isfinite(loss_searched)
    if not far_worse:  # a NaN from an overflow counts against the weights that gave it
        run.proxy.load_state_dict(searched_weights)
        return searched
    run.progress("note", {"message": f"the search's weight updates raised the loss over the data ({loss_kept:.4g} "
                                     f"-> {loss_searched:.4g} under the chosen masks); its choice of channels is "
                                     "kept, the weights before it go on to the fine-tune (a lower --search-lr may "
                                     "let the search train them)"})
    return kept


def _masked_outputs(run: PruneRun, handle, masks: Masks) -> list[np.ndarray]:
    handle.set_masks(masks)
    run.proxy.round_to_stored()  # what the written model will compute
    with exact_float32():
        return predict(run.proxy, run.dataset, device=run.device.torch_device)


def _loss_of(run: PruneRun, outputs: list[np.ndarray]) -> float:
    """The task loss over the whole data set, from the proxy's outputs on it."""
    with torch.no_grad():
        return float(run.loss_fn(tuple(torch.from_numpy(o) for o in outputs), np.arange(len(run.dataset))))


def _fine_tune_harm(run: PruneRun, outputs: list[np.ndarray], loss_before: float | None) -> str | None:
    """Why the fine-tuned weights are worse than none, or None. Overflow: PicoDet's layout detector after
    two steps on synthetic data. A higher loss over the data: the same detector, data-free, with SGD's
    steps clipped, went from 0.76 to 1.49 in three steps (its output error on pictures from 1.7 to 8.3).
    Costs one pass over the data before the fine-tune."""
    kept = outputs if run.reference is None else blank_where_reference_nonfinite(outputs, run.reference)[0]
    if not all(np.isfinite(o).all() for o in kept if np.issubdtype(o.dtype, np.floating)):
        return "made the outputs overflow (NaN/Inf)"
    after = _loss_of(run, outputs)
    if loss_before is not None and math.isfinite(loss_before) and after > loss_before:
        return f"raised the loss over the data ({loss_before:.4g} -> {after:.4g})"
    return None


def _diverged_note(losses: StepLosses, steps: int) -> str:
    stopped = (f"the fine-tune stopped after {losses.ran()} of its {steps} steps: its loss diverged (the weights "
               "before the step that blew up are kept)")
    if losses.diverged_capped:  # the learning rate did not set the steps: lowering it changes nothing
        return (f"{stopped} though each step moved a weight by at most {MAX_RELATIVE_STEP:.0%} of its size; the "
                "pruned model may be too far from the original to recover at this budget (a larger --target-flops "
                "keeps more of it)")
    return f"{stopped}; a lower --lr may let it run"


def _recover_once(run: PruneRun, handle, masks: Masks, steps: int, batch: int, deadline: float | None
                  ) -> tuple[list[np.ndarray], StepLosses]:
    """The fine-tuned proxy's outputs and the losses of the steps it ran."""
    config = run.config
    recipe = RecoveryRecipe(steps=steps, lr=config.recovery.lr, batch_size=batch, seed=config.seed)
    losses = recover_weights(run.proxy, run.dataset, run.reference, recipe,
                             set_pruned=lambda: handle.set_masks(masks), device=run.device.torch_device,
                             on_step=lambda s, loss: run.progress("finetune", {"step": s, "loss": loss}),
                             deadline=deadline, logits_of=run.logits_of)
    with exact_float32():
        return predict(run.proxy, run.dataset, device=run.device.torch_device), losses


def _recovery_steps(run: PruneRun, scores: Scores) -> tuple[int, int, float | None]:
    """Fine-tune steps, batch and the seconds a step takes (as the search measured them where it ran): as
    planned, cut to the time left (baselines add the unused search steps)."""
    plan = run.plan.steps if run.plan is not None else None
    config = run.config
    if plan is None:
        planned = RecoveryConfig().steps if config.recovery.steps is None else config.recovery.steps
        search_steps, batch = config.search.darp(config.seed).steps, config.search.darp(config.seed).batch_size
    else:
        planned, search_steps, batch = plan.finetune_steps, plan.search_steps, plan.batch_size
    unused = search_steps - scores.search_steps  # a baseline's, or a search that converged (or ran out of time)
    if config.recovery.steps is not None and config.search.steps is None:
        unused = 0  # fine-tune steps asked for, search steps not: exactly those (`--method l1 --finetune-steps 0`)
    if plan is None or run.plan.seconds is None:
        return planned + unused, batch, None
    step_seconds = plan.step_seconds
    if config.search.method == "darp" and run.plan.search_data is None and scores.search_steps > 0:
        passes = SEARCH_PASSES * len(run.dataset) * run.plan.forward_seconds  # not steps: its BatchNorm passes
        step_seconds = max(run.timings["search"] - passes, 0.5 * run.timings["search"]) / scores.search_steps
    most = (DEFAULT_FINETUNE_STEPS if config.recovery.steps is None else planned) + unused
    left = run.plan.seconds_left() - _tail_seconds(run) - _recovery_start_seconds(run)
    return finetune_steps_left(left, step_seconds, most, config.recovery.steps), batch, step_seconds


def _deadline(run: PruneRun, explicit_steps: int | None) -> float | None:
    """When training must end for the run to end in its time budget (validation and writing after it);
    None without a budget or with an explicit step count."""
    plan = run.plan
    if plan is None or plan.seconds is None or explicit_steps is not None:
        return None
    return run.started + usable_seconds(plan.seconds) - _tail_seconds(run)


def _search_deadline(run: PruneRun) -> float | None:
    """The search's: `_deadline`, less the planned fine-tune."""
    deadline = _deadline(run, run.config.search.steps)
    return None if deadline is None else (deadline - run.plan.steps.step_seconds * run.plan.steps.finetune_steps
                                          - _recovery_start_seconds(run))


def _finetune_deadline(run: PruneRun) -> float | None:
    return _deadline(run, run.config.recovery.steps)


def _tail_seconds(run: PruneRun) -> float:
    """The planned seconds of what follows the fine-tune (`plan.tail_seconds`)."""
    return tail_seconds(run.plan.forward_seconds, len(run.dataset), run.config.validation.latency_runs, 0.0)


def _recovery_start_seconds(run: PruneRun) -> float:
    return recovery_start_seconds(run.plan.forward_seconds, len(run.dataset))


def _eta(run: PruneRun, finetune_steps: int | None = None, step_seconds: float | None = None) -> float | None:
    """Seconds until the run should end (None without a time budget): as planned, or from the fine-tune's steps
    (each taking `step_seconds`, else the planned time)."""
    plan = run.plan
    if plan is None or plan.seconds is None or plan.expected_s is None:
        return None
    if finetune_steps is None:
        return max(plan.expected_s - (time.perf_counter() - run.started), 0.0)
    per_step = plan.steps.step_seconds if step_seconds is None else step_seconds
    return finetune_steps * per_step + _recovery_start_seconds(run) + _tail_seconds(run)


# rewrite, validate, write -------------------------------------------------------------------------
def rewrite_model(run: PruneRun, masks: Masks, *, source: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """The smaller ONNX model: `source` (default: the fine-tuned proxy exported, or the input model when
    no proxy was built) with the masked units removed."""
    with run.timings.stage("rewrite"):
        if source is None:
            source = run.proxy.to_onnx() if run.proxy is not None else run.model
        pruned = rewrite(source, run.analysis, masks)
        name_output_dims(pruned, run.given_outputs)
        restore_stored_types(pruned, run.stored_types)
        record_input_shapes(pruned, run.input_shapes)
        return pruned


def validate(run: PruneRun, pruned: onnx.ModelProto, masks: Masks, masked_outputs: list[np.ndarray]) -> Validation:
    """ONNX checks, onnxruntime equals the masked proxy, the recount equals the cost model, fidelity to
    the original, latency before and after. ValidationFailedError on any failure."""
    label = str(run.out_path or "pruned model")
    runs = run.config.validation.latency_runs
    with run.timings.stage("validation"):
        micro = run.dataset.micro_batches
        before, _, session_before = run_model(run.model, run.dataset.inputs, run.device.ort_device, "original model",
                                              micro=micro)
        baseline = baseline_gaps(before, run.reference) if run.reference is not None else None
        written = check_written(pruned, run.dataset.inputs, masked_outputs, device=run.device.ort_device,
                                label=label, against="the masked proxy", micro=micro, baseline=baseline)
        counted = count_graph(pruned, run.input_shapes)
        expected_macs, expected_params = run.cost_model.macs(masks), run.cost_model.params(masks)
        if counted.macs != expected_macs or counted.params != expected_params:
            raise ValidationFailedError(
                f"{label}: counted {counted.macs} MACs / {counted.params} params, the cost model predicted "
                f"{expected_macs} / {expected_params}"
            )
        one = run.dataset.timing_feeds()
        kept, measured_on = _fidelity(run, written, before, session_before, label)
        limit = run.config.validation.drift_limit(labelled=run.dataset.labels is not None)
        details = {"top1_agreement": kept.top1_agreement, "fidelity_on": measured_on,
                   "macs_after": counted.macs, "macs_before": run.cost_model.full_macs}
        gated = f"the pruned model ({measured_on})"  # not its path: a model the gate refuses is never written
        check_drift(kept.relative_error, limit, gated, run.dataset.synthetic, details=details)
        check_signal(kept, limit, gated, run.dataset.synthetic, details=details)
        # the two models take turns run by run: load on the machine then hits both alike (timed one after the
        # other, a busy machine made a faster nsnet2 look 70% slower, and prune warned of it)
        before_ms, after_ms = time_sessions([session_before, written.session], one, runs=runs, rounds=runs, warmup=3)
        return Validation(
            provider=written.provider, max_abs_diff=written.max_abs_diff, fidelity=kept,
            latency_ms_before=before_ms, latency_ms_after=after_ms,
            latency_runs=runs, macs=counted.macs, params=counted.params,
            checks=["onnx.checker(full)", "strict shape inference", f"onnxruntime ({written.provider})",
                    "equivalence with masked proxy", "MACs/params recount"], fidelity_on=measured_on,
        )


def with_post_processing(run: PruneRun, pruned: onnx.ModelProto, validation: Validation) -> onnx.ModelProto:
    """The pruned network with the post-processing split off at load written back after it, checked whole
    (validation.post_processing); the pruned model itself where there was none."""
    if run.post is None:
        return pruned
    label = str(run.out_path or "pruned model")
    with run.timings.stage("validation"):
        whole = attach_post_processing(pruned, run.post)
        feeds = whole_feeds(run.post.original, run.dataset.timing_feeds(1)[0], run.post.input_shapes,
                            run.config.seed)
        for note in check_whole(whole, run.post.original, feeds, device=run.device.ort_device, label=label):
            run.progress("note", {"message": note})
    validation.checks.append("post-processing written back: onnx.checker(full), onnxruntime")
    return whole


def original_model(run: PruneRun) -> onnx.ModelProto:
    """The model as given (with its post-processing), for the counts and the diff."""
    return run.model if run.post is None else run.post.original


def _fidelity(run: PruneRun, written, before: list[np.ndarray], session_before, label: str):
    """Fidelity to the original on the held-out samples where there are any, else on the training data; and
    which samples those were."""
    held, micro = run.holdout, run.dataset.micro_batches
    names, classes, ids = [o.name for o in run.model.graph.output], fixed_classes(run.model), label_outputs(run.model)
    logits, linear = logit_outputs(run.model), linear_outputs(run.model)
    if held is None and run.dataset.synthetic:
        held = fresh_synthetic(run)
    if held is None:
        kept = fidelity(written.outputs, before, run.dataset.labels, names, classes, ids, logits, linear)
        return kept, f"{len(run.dataset)} fitted (no holdout) samples"
    original = run_batches(session_before, held.inputs, "original model", micro=micro)
    pruned = run_batches(written.session, held.inputs, label, micro=micro)
    kind = "fresh synthetic samples (not fitted)" if held.synthetic else "held-out samples"
    return fidelity(pruned, original, held.labels, names, classes, ids, logits, linear), f"{len(held)} {kind}"


def fresh_synthetic(run: PruneRun) -> Dataset:
    """Synthetic samples drawn anew (another seed, half as many, at least MIN_HELD_OUT) for the data-free
    fidelity: measured on the samples it was fitted to (and its BatchNorm re-estimated on), a pruned model can
    look closer than it is on any other input (an orientation classifier had memorised its 64 samples and was
    constant on fresh ones)."""
    count = min(len(run.dataset), max(MIN_HELD_OUT, len(run.dataset) // 2))
    return synthetic_dataset(run.model, samples=count, seed=run.config.seed + FRESH_SEED_OFFSET,
                             shapes=run.input_shapes, micro_batches=run.dataset.micro_batches,
                             pixel_range=run.pixel_range)


def write(run: PruneRun, result: PruneResult) -> dict[str, Path]:
    """Save the model and (with a report folder) its reports, all or nothing, never over the input;
    nothing when the config says not to write. Returns the report paths by kind."""
    if run.out_path is None:
        return {}
    with run.timings.stage("write"):
        return write_prune_outputs(result, run.out_path, report=run.config.io.report, force=run.config.io.force,
                                   protect=run.source.protect)


# the composition ----------------------------------------------------------------------------------
def run_prune(model_or_path: str | os.PathLike | onnx.ModelProto, config: PruneConfig, *,
              progress: ProgressFn | None = None) -> PruneResult | None:
    """The whole workflow over one config. Under torchrun every rank searches and fine-tunes (sharded data,
    averaged gradients); extraction, rewrite, validation and writing run on rank 0, which alone returns
    the result (the other ranks return None)."""
    distributed.init(device=config.device)
    run = prepare(model_or_path, config, progress=progress)
    scores = score(run)
    extraction = distributed.broadcast(distributed.on_main(lambda: extract(run, scores), "extraction"))
    recovered = recover(run, scores, extraction.masks)

    def finish() -> PruneResult:
        pruned = rewrite_model(run, extraction.masks)
        validation = validate(run, pruned, extraction.masks, recovered.outputs)
        pruned = with_post_processing(run, pruned, validation)
        result = result_of(run, scores, extraction, recovered, pruned, validation, run.out_path)
        result.reports = write(run, result)
        return result

    return distributed.on_main(finish, "rewrite, validation and writing")


def result_of(run: PruneRun, scores: Scores, extraction: Extraction, recovered: Recovered, pruned: onnx.ModelProto,
              validation: Validation, output: Path | None) -> PruneResult:
    masks, analysis = extraction.masks, run.analysis
    return PruneResult(
        input=run.source.name, output=None if output is None else str(output), method=run.config.search.method,
        metric=run.budget.metric, budget=run.budget.limit, flops_before=run.cost_model.full_macs,
        flops_after=validation.macs, params_before=run.original_params, params_after=validation.params,
        nodes_before=run.original_nodes, nodes_after=len(pruned.graph.node),
        channels_removed=int(sum((m.size - np.count_nonzero(m)) * analysis.groups[g].width for g, m in masks.items()
                                 if analysis.groups[g].unit.counts_as_channels)),
        groups=group_rows(analysis, masks), validation=validation, device=run.device.torch_device,
        seed=run.config.seed, search_steps=scores.search_steps, finetune_steps=recovered.steps,
        loss=run.loss_fn.mode, extraction=extraction, timings=run.timings, masks=masks, model=pruned,
        data=run.dataset.describe(), resources=run.plan.describe() if run.plan is not None else {},
        original=original_model(run), input_shapes=dict(run.input_shapes),
        warnings=_warnings(run, validation, pruned, extraction.channel_multiple),
    )


def _warnings(run: PruneRun, validation: Validation, pruned: onnx.ModelProto, channel_multiple: int) -> list[str]:
    """What the user should check before deploying the written model (advice.py)."""
    found = written_model_warnings(
        validation.fidelity, synthetic=run.dataset.synthetic, latency_ms_before=validation.latency_ms_before,
        latency_ms_after=validation.latency_ms_after, channel_multiple=channel_multiple,
        stand_ins=stand_in_inputs(run.model, list(run.dataset.picture_ranges)) if run.dataset.synthetic else {})
    larger = larger_than_original(run.original_bytes, pruned.ByteSize(), run.folded_weights)
    unjudged = one_decision_outputs(run.model, run.reference) if run.dataset.synthetic else None
    return found + [w for w in (unjudged, larger) if w]


def group_rows(analysis: ChannelAnalysis, masks: Mapping[int, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for g in analysis.groups:
        kept = int(np.count_nonzero(masks[g.id])) if g.id in masks else g.size
        rows.append({"id": g.id, "label": g.label, "kind": g.kind, "size": g.size, "kept": kept,
                     "width": g.width, "frozen": g.frozen})
    return rows


def prune(
    model_or_path: str | os.PathLike | onnx.ModelProto,
    config: PruneConfig | None = None,
    *,
    output: str | os.PathLike | None = None,
    target_flops: float | None = None,
    target_params: float | None = None,
    target_latency: float | None = None,
    method: str = SearchConfig.method,
    data: str | os.PathLike | Dataset | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    search_steps: int | None = SearchConfig.steps,
    finetune_steps: int | None = RecoveryConfig.steps,
    batch_size: int | None = SearchConfig.batch_size,
    lr: float | None = RecoveryConfig.lr,
    search_lr: float | None = SearchConfig.lr,
    tau_sample: tuple[float, float] = SearchConfig.tau_sample,
    tau_penalty: tuple[float, float] = SearchConfig.tau_penalty,
    schedule: str = SearchConfig.schedule,
    hard_gates: bool = SearchConfig.hard_gates,
    channel_multiple: int | str | None = ExtractionConfig.channel_multiple,
    latency_aware: bool = ExtractionConfig.latency_aware,
    latency_weight: float = ExtractionConfig.latency_weight,
    keep_branches: bool = ExtractionConfig.keep_branches,
    keep_kinds: tuple[str, ...] = ExtractionConfig.keep_kinds,
    keep_groups: tuple[str, ...] = ExtractionConfig.keep_groups,
    synthetic_samples: int = IOConfig.synthetic_samples,
    data_loader: str | None = IOConfig.data_loader,
    preprocess: str | None = IOConfig.preprocess,
    max_samples: int | None = IOConfig.max_samples,
    time_budget: float | str | None = ResourceConfig.time_budget,
    max_memory: int | str | None = ResourceConfig.max_memory,
    search_resolution: float = ResourceConfig.search_resolution,
    device: str = PruneConfig.device,
    seed: int = PruneConfig.seed,
    force: bool = IOConfig.force,
    write: bool = IOConfig.write,
    report: str | os.PathLike | None = IOConfig.report,
    allow_nonfinite: bool = IOConfig.allow_nonfinite,
    latency_runs: int = ValidationConfig.latency_runs,
    max_drift: float | str | None = ValidationConfig.max_drift,
    holdout: float = IOConfig.holdout,
    progress: ProgressFn | None = None,
) -> PruneResult | None:
    """Prune a model to a MACs (`target_flops`), parameter or latency budget and write the validated result.
    Under torchrun, rank 0 returns the result and the other ranks None (see `run_prune`).

    Settings come either as these keywords or as one `PruneConfig` (`config`), not both; the keyword
    defaults are `PruneConfig`'s (a test checks they agree).

    MACs and parameter budgets are fractions in (0, 1] or absolute counts; `target_latency` is a
    fraction of the latency that the layer timings estimate for the model (it implies
    `latency_aware`; the search then penalises expected latency). Without `data`, inputs are synthetic and the
    loss is distillation from the original model; with labels in the data, cross-entropy.

    `latency_aware` times the model's layers on the target runtime and removes what costs the most
    time per importance lost (see `search.latency_extract`); `channel_multiple` ('auto', the default:
    what the runtime's kernels want; 1: any width) keeps channel counts aligned; `latency_weight`
    (default 1) is what a relative latency cut is worth against relative importance lost when the
    latency-aware extraction picks among its candidates.

    `time_budget` ('auto': 5 min on CPU, 2 min on CUDA; '90s'; 'off') plans the steps, batch and samples left
    unset from measured step times; `max_memory` caps the batch; `search_resolution` < 1 runs the search on
    downscaled images when the model is fully convolutional. `data` may be a folder of images (`preprocess`:
    a preset and overrides, see `training.preprocess`); `data_loader` ('FILE.py:FUNCTION') yields feed dicts.
    `max_drift` ('auto', the default: 0.99, no signal kept, when distilling, none with labels; 'off': none):
    a written model whose outputs differ from the original's on the data by more (relative L2) fails
    validation and is not written. `holdout` (default 0.2) of real data with at least 40 samples is kept out
    of training, and the output error and agreement are measured on it (0: on the training samples)."""
    options = dict(output=output, target_flops=target_flops, target_params=target_params,
                   target_latency=target_latency, method=method, data=data, input_shapes=input_shapes,
                   search_steps=search_steps, finetune_steps=finetune_steps, batch_size=batch_size, lr=lr,
                   search_lr=search_lr, tau_sample=tau_sample, tau_penalty=tau_penalty, schedule=schedule,
                   hard_gates=hard_gates, channel_multiple=channel_multiple, latency_aware=latency_aware,
                   latency_weight=latency_weight, keep_branches=keep_branches, keep_kinds=keep_kinds,
                   keep_groups=keep_groups, synthetic_samples=synthetic_samples,
                   device=device, seed=seed, force=force, write=write, report=report,
                   allow_nonfinite=allow_nonfinite, data_loader=data_loader,
                   preprocess=preprocess, max_samples=max_samples, time_budget=time_budget, max_memory=max_memory,
                   search_resolution=search_resolution, latency_runs=latency_runs, max_drift=max_drift,
                   holdout=holdout)
    if config is None:
        config = prune_config(**options)
    else:
        changed = [name for name, value in options.items() if not _is_default(name, value)]
        if changed:
            raise OptionError(changed[0], "{option}: give settings either in `config` or as keywords, not both")
    return run_prune(model_or_path, config, progress=progress)


def _is_default(name: str, value: Any) -> bool:
    import inspect

    default = inspect.signature(prune).parameters[name].default
    return value is default or (value == default if not isinstance(value, np.ndarray) else False)
