"""Flag parsing, validation and evaluation, compared with the real OpenFeature flagd provider."""

from __future__ import annotations

import json
import random

import cbor2
import pytest
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.contrib.tools.flagd.core.targeting.custom_ops import normalize_numbers
from openfeature.evaluation_context import EvaluationContext

from ortserve.rollout.flags import FlagsError, check_versions, parse_flags
from ortserve.rollout.fractional import cbor

FLAGS = {
    "flags": {
        # the DESIGN.md shape: a canary split of a model and a shadow split
        "digits": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "int8": "2"},
            "targeting": {"fractional": [["stable", 90], ["int8", 10]]},
        },
        "digits.shadow": {
            "state": "ENABLED",
            "defaultVariant": "off",
            "variants": {"off": "", "pruned": "4"},
            "targeting": {"fractional": [["off", 50], ["pruned", 50]]},
        },
        "three": {
            "state": "ENABLED",
            "defaultVariant": "a",
            "variants": {"a": "1", "b": "2", "c": "3", "d": "4"},
            "targeting": {"fractional": [["a", 33], ["b", 33], ["c", 34], ["d", 0]]},
        },
        # attribute rules in front of a split bucketed on another property
        "rules": {
            "state": "ENABLED",
            "defaultVariant": "a",
            "variants": {"a": "1", "b": "2"},
            "targeting": {
                "if": [
                    {"and": [{"in": [{"var": "country"}, ["ch", "de"]]}, {"!=": [{"var": "tier"}, "free"]}]},
                    "b",
                    {"or": [{"==": [{"var": "tier"}, "gold"]}, {"in": ["@beta.", {"var": "email"}]}]},
                    "a",
                    {
                        "fractional": [
                            {"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]},
                            ["a", 25],
                            ["b", 75],
                        ]
                    },
                ]
            },
        },
        "off": {
            "state": "DISABLED",
            "defaultVariant": "a",
            "variants": {"a": "1", "b": "2"},
            "targeting": {"fractional": [["a", 50], ["b", 50]]},
        },
        "static": {"state": "ENABLED", "defaultVariant": "b", "variants": {"a": "1", "b": "2"}},
    }
}


def _context(i: int) -> tuple[str, dict[str, str]]:
    rnd = random.Random(i)
    key = f"user-{i}" if i % 5 else f"ü{rnd.getrandbits(40):x}@example.org"  # non-ASCII keys too
    domain = "beta.example.org" if i % 11 == 0 else "example.org"
    attrs = {
        "country": rnd.choice(["ch", "de", "fr", "us"]),
        "tier": rnd.choice(["free", "gold", "pro"]),
        "email": f"u{i}@{domain}",
    }
    return key, attrs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("flags") / "flags.json"
    path.write_text(json.dumps(FLAGS))
    api.set_provider_and_wait(
        FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
    )
    yield api.get_client()
    api.shutdown()


def test_every_assignment_equals_the_flagd_provider(reference):
    """12,000 evaluation contexts x 6 flags: our variant equals flagd's (in-process, file mode).
    A DISABLED flag resolves to the caller's default in flagd and to defaultVariant here."""
    ours = parse_flags(json.dumps(FLAGS))
    counts: dict[str, dict[str, int]] = {}
    for i in range(12_000):
        key, attrs = _context(i)
        ctx = EvaluationContext(targeting_key=key, attributes=attrs)
        for flag_key, flag in ours.flags.items():
            expected = reference.get_string_details(flag_key, "<default>", ctx)
            if expected.reason == "DISABLED":
                expected_variant = FLAGS["flags"][flag_key]["defaultVariant"]
            else:
                assert expected.error_code is None, expected
                expected_variant = expected.variant
            got = flag.evaluate(key, attrs)
            assert got == expected_variant, (flag_key, key, attrs)
            counts.setdefault(flag_key, {}).setdefault(got, 0)
            counts[flag_key][got] += 1
    assert 0.08 < counts["digits"]["int8"] / 12_000 < 0.12
    assert set(counts["three"]) == {"a", "b", "c"} and counts["off"] == {"a": 12_000}


def test_no_targeting_key_gives_the_default_variant_like_flagd(reference):
    flag = parse_flags(json.dumps(FLAGS)).flags["digits"]
    assert (
        flag.evaluate("", {})
        == "stable"
        == reference.get_string_details("digits", "", EvaluationContext()).variant
    )


@pytest.mark.parametrize(
    "value",
    [
        0,
        23,
        24,
        255,
        256,
        65536,
        2**32,
        2**63,
        -1,
        -25,
        -70000,
        1.0,
        1.5,
        0.1,
        1e300,
        -2.5e-8,
        "",
        "abc",
        "ü" * 30,
        "x" * 70000,
        True,
        False,
        None,
        ["k", "ü"],
        [1, [2.5]],
    ],
)
def test_cbor_encoding_equals_cbor2_canonical(value):
    assert cbor(value) == cbor2.dumps(normalize_numbers(value), canonical=True)


def _doc(targeting=None, variants=None, **extra):
    flag = {"state": "ENABLED", "defaultVariant": "a", "variants": variants or {"a": "1", "b": "2"}, **extra}
    if targeting is not None:
        flag["targeting"] = targeting
    return json.dumps({"flags": {"digits": flag}})


def _deep_rules(depth: int) -> str:
    """A flags document whose targeting nests ``if`` ``depth`` times (deep enough: refused, not a crash)."""
    rule = '{"if": [true, ' * depth + '{"fractional": [["a", 50], ["b", 50]]}' + ', "a"]}' * depth
    head = (
        '{"flags": {"digits": {"state": "ENABLED", "defaultVariant": "a", "variants": {"a": "1", "b": "2"}, '
    )
    return head + '"targeting": ' + rule + "}}}"


INVALID = [
    ("bad json", '{"flags": {"digits": ', "json"),
    ("not an object", "[1, 2]", "schema"),
    ("unknown operator", _doc({"sem_ver": [{"var": "v"}, ">=", "1.0.0"]}), "operator"),
    ("unknown operator nested", _doc({"if": [{"startsWith": [{"var": "e"}, "x"]}, "a", "b"]}), "operator"),
    ("weights below 100", _doc({"fractional": [["a", 50], ["b", 40]]}), "weights"),
    ("weights above 100", _doc({"fractional": [["a", 60], ["b", 50]]}), "weights"),
    ("weights default to 1", _doc({"fractional": [["a"], ["b"]]}), "weights"),
    ("float weight", _doc({"fractional": [["a", 50.5], ["b", 49.5]]}), "weights"),
    ("fractional names unknown variant", _doc({"fractional": [["a", 50], ["z", 50]]}), "schema"),
    (
        "default variant missing",
        json.dumps({"flags": {"digits": {"variants": {"a": "1"}, "defaultVariant": "x"}}}),
        "schema",
    ),
    ("bad state", _doc(state="ON"), "schema"),
    ("version not loaded", _doc(variants={"a": "1", "b": "9"}), "version"),
    ("version not a string", _doc(variants={"a": "1", "b": 2}), "schema"),
    (
        "shadow version not loaded",
        json.dumps(
            {"flags": {"digits.shadow": {"defaultVariant": "off", "variants": {"off": "", "x": "7"}}}}
        ),
        "version",
    ),
    # an editor that saves UTF-16 (PowerShell 5's Out-File does); json.loads alone would take it
    ("utf-16 file", _doc({"fractional": [["a", 50], ["b", 50]]}).encode("utf-16"), "json"),
    ("json nested too deeply", "[" * 100_000 + "]" * 100_000, "depth"),
    ("rules nested too deeply", _deep_rules(600), "depth"),
]


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_documents_are_refused_with_a_reason(case):
    _, text, reason = case
    with pytest.raises(FlagsError) as e:
        check_versions(parse_flags(text), {"digits": {"1", "2"}})
    assert e.value.reason == reason, str(e.value)


def test_flags_for_other_keys_are_not_routing_flags():
    flags = parse_flags(
        json.dumps(
            {"flags": {"checkout-button": {"defaultVariant": "on", "variants": {"on": True, "off": False}}}}
        )
    )
    check_versions(flags, {"digits": {"1"}})
    assert flags.flags["checkout-button"].evaluate("k", {}) == "on"
