"""'auto' keeps a finer channel multiple only where onnxruntime does not time it slow for its MACs."""

from __future__ import annotations

import darp_onnx
import darp_onnx.workflows.prune as prune_workflow
from darp_onnx.workflows.multiple_speed import GOOD_SPEED_PER_MAC, TimedCandidate, choose_for_speed
from tests.workflows.test_auto_multiple import one_group_net

# BlazeFace at 70% MACs (stop 28's corpus run): multiples of 2 kept 68% and ran slower than the original
BLAZEFACE = [TimedCandidate(16, 0.52, 2.9), TimedCandidate(8, 0.59, 3.0), TimedCandidate(2, 0.68, 10.97)]


def test_a_finer_multiple_slower_than_the_original_gives_way():
    kept = choose_for_speed(BLAZEFACE, original_ms=8.63, preferred=2)
    assert kept.multiple == 8  # the most MACs among the candidates fast enough for theirs


def test_a_finer_multiple_fast_enough_is_kept():
    fast = [TimedCandidate(16, 0.52, 2.9), TimedCandidate(2, 0.68, 5.5)]
    assert 8.63 / 5.5 * 0.68 >= GOOD_SPEED_PER_MAC
    assert choose_for_speed(fast, original_ms=8.63, preferred=2).multiple == 2


def test_with_none_fast_enough_or_a_model_too_fast_to_judge_the_budget_choice_stays():
    slow = [TimedCandidate(16, 0.52, 8.0), TimedCandidate(2, 0.68, 12.0)]
    assert choose_for_speed(slow, original_ms=8.63, preferred=2).multiple == 2
    tiny = [TimedCandidate(16, 0.52, 0.05), TimedCandidate(2, 0.68, 0.2)]  # per-op overhead, not MACs
    assert choose_for_speed(tiny, original_ms=0.1, preferred=2).multiple == 2


def test_prune_times_the_candidates_and_keeps_the_fast_one(tmp_path, monkeypatch):
    """The workflow: a kernel block of 8 undershoots, 'auto' goes finer; timed slow, the coarse one is kept."""
    monkeypatch.setattr(prune_workflow, "kernel_channel_multiple", lambda device="cpu": 8)
    calls = []

    def timings(sessions, feed, **kw):  # original, multiple 8, multiple 4 ...: the finer ones slow
        calls.append(len(sessions))
        return [2.0, 0.4] + [10.0] * (len(sessions) - 2)

    monkeypatch.setattr(prune_workflow, "time_sessions", timings)
    notes = []
    result = darp_onnx.prune(one_group_net(), output=tmp_path / "p.onnx", target_flops=0.5, search_steps=3,
                             finetune_steps=1, batch_size=4, synthetic_samples=8, latency_runs=2, max_drift="off",
                             progress=lambda stage, info: notes.append(info.get("message", "")))
    assert calls and calls[0] >= 3
    assert result.extraction.channel_multiple == 8
    assert any("kept multiples of 8" in n for n in notes)
