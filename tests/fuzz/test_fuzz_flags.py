"""The flags compiler and evaluator on any JSON: a document is taken or refused with a reason
(FlagsError), and a taken one evaluates to one of its variants for any context."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ortserve.errors import FlagsError
from ortserve.rollout.flags import parse_flags
from tests.fuzz import strategies as s

REASONS = {"json", "schema", "operator", "weights", "version", "size", "depth"}
variant_maps = st.dictionaries(
    st.text(max_size=4), st.sampled_from(["1", "2", ""]) | s.json_leaves, min_size=1, max_size=4
)


@st.composite
def documents(draw):
    variants = draw(variant_maps)
    flag = {
        "state": draw(st.sampled_from(["ENABLED", "DISABLED", "maybe"])),
        "defaultVariant": draw(st.sampled_from(sorted(variants)) | st.text(max_size=3)),
        "variants": variants,
    }
    if draw(st.booleans()):
        flag["targeting"] = draw(s.json_values)
    doc = {"flags": {draw(st.sampled_from(["digits", "digits.shadow", "other"])): flag}}
    text = json.dumps(doc)
    return draw(st.sampled_from([text, text[: draw(st.integers(0, len(text)))]]))


def _collect(errors: list[Exception]):
    return lambda flag, error: errors.append(error)


contexts = st.tuples(
    st.text(max_size=8), st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4)
)


@given(documents(), st.lists(contexts, min_size=1, max_size=5))
def test_documents_are_taken_or_refused_and_evaluate_to_a_variant(text, evaluations):
    try:
        flags = parse_flags(text)
    except FlagsError as e:
        assert e.reason in REASONS, e.reason
        return
    for flag in flags.flags.values():
        errors: list[Exception] = []
        report = _collect(errors)
        for key, attributes in evaluations:
            assert flag.evaluate(key, attributes, report) in flag.variants
        assert not errors, errors  # a document within the bounds evaluates without failing


@given(s.json_values)
def test_any_targeting_compiles_or_is_refused(targeting):
    doc = {
        "flags": {
            "digits": {
                "state": "ENABLED",
                "defaultVariant": "a",
                "variants": {"a": "1", "b": "2"},
                "targeting": targeting,
            }
        }
    }
    try:
        flags = parse_flags(json.dumps(doc))
    except FlagsError as e:
        assert e.reason in REASONS
        return
    assert flags.flags["digits"].evaluate("k", {"x": "y"}) in ("a", "b")
