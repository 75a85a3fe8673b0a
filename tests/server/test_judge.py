"""The canary judge's sequential test: valid when looked at after every event, quick on a worse candidate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.judge_sim import check_against_the_class, first_rejections
from ortserve.rollout.judge import SequentialTest


def test_false_alarms_stay_under_alpha_when_checked_after_every_event():
    # 2,000 runs of an equally good candidate, 1,500 events each: the rate must be <= alpha (0.05)
    # up to sampling error (3 sigma of a binomial at 0.05 over 2,000 runs is 0.015).
    for share in (0.05, 0.25):
        first = np.concatenate([first_rejections(share, 1.0, 500, 1500, 0.05, seed) for seed in range(4)])
        assert (first > 0).mean() <= 0.05 + 0.015


def test_a_worse_candidate_is_caught():
    for share, ratio in ((0.05, 2.0), (0.25, 2.0), (0.05, 3.0)):
        first = first_rejections(share, ratio, 300, 3000, 0.05, seed=7)
        assert (first > 0).mean() > 0.99
        assert np.median(first[first > 0]) < 500


def test_the_simulation_and_the_class_agree():
    check_against_the_class(0.05)
    check_against_the_class(0.25)


def test_evidence_moves_the_right_way_and_survives_a_round_trip():
    test = SequentialTest(alpha=0.05)
    test.observe(candidate=0, baseline=40, share=0.1)  # events where traffic is: evidence for the candidate
    assert test.e_value < 1 and not test.rejected
    for _ in range(10):
        test.observe(candidate=5, baseline=5, share=0.1)  # half the events on 10% of the traffic
    assert test.rejected and test.e_value >= 20
    again = SequentialTest.from_dict(test.to_dict())
    assert math.isclose(again.log_e_value, test.log_e_value) and again.candidate_events == 50


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_all_traffic_on_one_side_is_no_evidence(share):
    test = SequentialTest()
    test.observe(candidate=10, baseline=10, share=share)
    assert test.e_value == 1.0 and test.candidate_events == 10


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        SequentialTest(alpha=1.5)
    with pytest.raises(ValueError):
        SequentialTest().observe(candidate=-1, baseline=0, share=0.5)
