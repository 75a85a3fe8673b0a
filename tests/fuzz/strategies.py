"""Hypothesis strategies shared by the fuzz tests: tensor headers and data as clients could send
them (valid, nearly valid and absurd), and JSON documents biased towards JSONLogic."""

from __future__ import annotations

from hypothesis import strategies as st

from ortserve.dtypes import DTYPES, V2_DTYPES
from ortserve.rollout.jsonlogic import OPERATORS

names = st.one_of(st.sampled_from(["a", "b", "x", "text", "input", ""]), st.text(max_size=12))
dtypes = st.one_of(st.sampled_from(sorted(DTYPES)), st.text(max_size=8))
v2_datatypes = st.one_of(st.sampled_from(sorted(V2_DTYPES)), st.text(max_size=8))
dims = st.one_of(
    st.integers(0, 6),
    st.sampled_from([-1, 2**31, 2**31 + 1, 2**40, 2**62]),
    st.integers(-(2**63), 2**63 - 1),
)
shapes = st.lists(dims, max_size=6) | st.lists(st.integers(0, 3), min_size=30, max_size=70)
data = st.binary(max_size=256)


@st.composite
def bytes_tensor_data(draw) -> bytes:
    """BYTES layouts: well formed, truncated, with wrong lengths or invalid UTF-8."""
    items = draw(st.lists(st.binary(max_size=8) | st.text(max_size=6).map(str.encode), max_size=8))
    out = b"".join(len(b).to_bytes(4, "little") + b for b in items)
    cut = draw(st.integers(0, len(out)))
    return draw(st.sampled_from([out, out[:cut], out + draw(st.binary(max_size=6))]))


json_leaves = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=6)


def _extend(children):
    ops = st.sampled_from([*OPERATORS, "var", "fractional", "nope"])
    operator = st.builds(lambda op, args: {op: args}, ops, children | st.lists(children, max_size=4))
    return (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3) | operator
    )


json_values = st.recursive(json_leaves, _extend, max_leaves=30)
