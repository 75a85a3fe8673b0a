"""The signature check on any headers: a batch size, or InvalidInput naming the input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ortserve.core.signature import Signature, TensorSpec
from ortserve.dtypes import DTYPES
from ortserve.errors import InvalidInput
from ortserve.tensors import Encoded
from tests.fuzz import strategies as s

spec_dims = st.lists(st.sampled_from([-1, 0, 1, 2, 3, 4]), max_size=4)


@st.composite
def signatures(draw):
    names = draw(st.lists(s.names, min_size=1, max_size=3, unique=True))
    batched = draw(st.integers(0, 8))
    inputs = []
    for name in names:
        shape = tuple(draw(spec_dims))
        if batched:
            shape = (-1, *shape)
        inputs.append(TensorSpec(name, draw(st.sampled_from(sorted(DTYPES))), shape))
    return Signature(tuple(inputs), (), batched, draw(st.integers(1, 1000)))


def _header(name, dtype, shape):
    dt = DTYPES.get(dtype, DTYPES["float32"])
    return Encoded(name, dt, tuple(shape), 0, lambda: None)


headers = st.dictionaries(
    s.names,
    st.builds(
        _header, s.names, s.dtypes, st.lists(st.integers(0, 5) | st.sampled_from([2**31, 2**40]), max_size=5)
    ),
    max_size=4,
)


@given(signatures(), headers)
def test_validate_gives_a_batch_size_or_invalid_input(signature, inputs):
    try:
        rows = signature.validate(inputs)
    except InvalidInput as e:
        assert str(e)
        return
    assert set(inputs) == {spec.name for spec in signature.inputs}
    if signature.max_batch_size:
        assert 1 <= rows <= signature.max_batch_size
    else:
        assert rows == 0
