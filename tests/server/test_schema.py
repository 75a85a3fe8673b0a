"""ortserve.schema: tables checked against dataclasses (table-driven), and written back as TOML."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from ortserve.schema import SchemaError, field_type, field_value, from_table, to_table, to_toml, toml_value


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int | str, ...] = ()


@dataclass(frozen=True)
class Batching:
    delay_us: int = field(default=500, metadata={"ge": 0})
    sizes: tuple[int, ...] = field(default=(), metadata={"ge": 1})


@dataclass(frozen=True)
class Doc:
    name: str = field(default="", metadata={"table": False})
    port: int = field(default=8001, metadata={"ge": 0, "le": 65535})
    ratio: float = field(default=0.5, metadata={"ge": 0})
    debug: bool = False
    level: Literal["basic", "all"] = "all"
    colour: str = field(default="red", metadata={"choices": ("red", "green")})
    folder: Path | None = None
    limit: int | None = None
    providers: tuple[str, ...] = field(default=("cpu",), metadata={"min_items": 1})
    dims: dict[str, int] = field(default_factory=dict, metadata={"ge": 1})
    extra: Any = None
    batching: Batching = field(default_factory=Batching)
    inputs: tuple[Tensor, ...] | None = None
    version: str | None = field(default=None, metadata={"parse": lambda v: _digits(v)})


def _digits(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return value
    raise ValueError('expected a version such as "2"')


@dataclass(frozen=True)
class Span:
    low: int = 0
    high: int = 10

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")


BAD = [
    ({"port": -1}, "f.toml: port: expected an integer from 0 to 65535, got -1"),
    ({"port": True}, "f.toml: port: expected an integer from 0 to 65535, got true"),  # a bool is not an int
    ({"port": 1.5}, "f.toml: port: expected an integer from 0 to 65535, got 1.5"),
    ({"ratio": "x"}, "f.toml: ratio: expected a number >= 0, got 'x'"),
    ({"ratio": False}, "f.toml: ratio: expected a number >= 0, got false"),
    ({"debug": 1}, "f.toml: debug: expected true or false, got 1"),
    ({"level": "basc"}, "f.toml: level: expected one of 'basic', 'all', got 'basc'; did you mean 'basic'?"),
    ({"colour": "blue"}, "f.toml: colour: expected one of 'red', 'green', got 'blue'"),
    ({"folder": 3}, "f.toml: folder: expected a path, got 3"),
    ({"providers": []}, "f.toml: providers: expected a non-empty list of strings, got []"),
    ({"providers": "cpu"}, "f.toml: providers: expected a non-empty list of strings, got 'cpu'"),
    ({"dims": {"seq": 0}}, "f.toml: dims: expected a table of integers >= 1, got {'seq': 0}"),
    ({"batching": 3}, "f.toml: batching: expected a table, got 3"),
    ({"batching": {"delay_us": -1}}, "f.toml [batching] delay_us: expected an integer >= 0, got -1"),
    (
        {"batching": {"sizes": [8, 0]}},
        "f.toml [batching] sizes: expected a list of integers >= 1, got [8, 0]",
    ),
    ({"batching": {"delay": 1}}, "f.toml [batching]: unknown key 'delay'; did you mean 'delay_us'?"),
    ({"inputs": [{"name": "x"}, {"shape": [1]}]}, "f.toml: inputs[1]: missing key 'name'"),
    (
        {"inputs": [{"name": "x", "shape": [1.5]}]},
        "f.toml: inputs[0].shape: expected a list of integers or strings",
    ),
    ({"inputs": {"name": "x"}}, "f.toml: inputs: expected an array of tables, got {'name': 'x'}"),
    ({"version": "one"}, "f.toml: version: expected a version such as \"2\", got 'one'"),
    ({"name": "x"}, "f.toml: unknown key 'name'; expected one of: "),  # a table=False field is no key
    ({"colur": "red"}, "f.toml: unknown key 'colur'; did you mean 'colour'?"),
    (
        {"zzz": 1},
        "f.toml: unknown key 'zzz'; expected one of: batching, colour, debug, dims, extra, folder, ",
    ),
]


@pytest.mark.parametrize(("table", "message"), BAD)
def test_bad_tables_are_one_line_naming_place_expected_and_got(table, message):
    with pytest.raises(SchemaError) as e:
        from_table(Doc, table, "f.toml")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


GOOD = [
    ({}, Doc()),
    ({"ratio": 2}, Doc(ratio=2.0)),  # an integer is a fine number
    ({"folder": "a/b"}, Doc(folder=Path("a/b"))),
    ({"providers": ["a", "b"]}, Doc(providers=("a", "b"))),
    ({"inputs": [{"name": "x", "shape": ["batch", 3]}]}, Doc(inputs=(Tensor("x", ("batch", 3)),))),
    ({"batching": {"sizes": [8]}}, Doc(batching=Batching(sizes=(8,)))),
    ({"version": 2}, Doc(version="2")),
    ({"extra": [1, "x"]}, Doc(extra=[1, "x"])),
]


@pytest.mark.parametrize(("table", "expected"), GOOD)
def test_good_tables_build_the_dataclass(table, expected):
    got = from_table(Doc, table, "f.toml")
    assert got == expected and isinstance(got.ratio, float)


def test_given_values_checks_across_fields_and_own_error_and_key_words():
    assert from_table(Doc, {}, "f", given={"name": "digits"}).name == "digits"
    with pytest.raises(SchemaError, match=r"^f \[span\]: low 5 is above high 1$"):
        from_table(Span, {"low": 5, "high": 1}, "f", path=("span",))

    class Mine(Exception):
        pass

    with pytest.raises(Mine, match=r"^recipe: unknown parameter 'bits'; expected one of: high, low$"):
        from_table(Span, {"bits": 4}, "recipe", key="parameter", error=Mine)


@pytest.mark.parametrize(
    ("name", "value", "text", "expected"),
    [
        ("port", "9001", True, 9001),
        ("debug", "yes", True, True),
        ("debug", "off", True, False),
        ("ratio", "0.25", True, 0.25),
        ("folder", "x", True, Path("x")),
        ("port", 80, False, 80),
    ],
)
def test_field_value_reads_text_from_flags_and_environment(name, value, text, expected):
    assert field_value(Doc, name, value, "ENV", text=text) == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("port", "eighty", "ORTSERVE_X: expected an integer from 0 to 65535, got 'eighty'"),
        ("port", "70000", "ORTSERVE_X: expected an integer from 0 to 65535, got '70000'"),
        ("debug", "maybe", "ORTSERVE_X: expected true or false, got 'maybe'"),
        ("ratio", "-1", "ORTSERVE_X: expected a number >= 0, got '-1'"),
    ],
)
def test_field_value_errors_name_the_source(name, value, message):
    with pytest.raises(SchemaError) as e:
        field_value(Doc, name, value, "ORTSERVE_X", text=True)
    assert str(e.value) == message


def test_field_type_drops_none():
    assert field_type(Doc, "folder") is Path and field_type(Doc, "port") is int


def test_to_table_leaves_out_defaults_and_none_and_round_trips_through_toml():
    doc = Doc(
        name="not written",
        port=9001,
        folder=Path("m"),
        dims={"sequence": 128},
        batching=Batching(sizes=(8, 16)),
        inputs=(Tensor("x", ("batch", 3)),),
        version="2",
    )
    table = to_table(doc)
    assert list(table) == ["port", "folder", "dims", "batching", "inputs", "version"]
    assert table["batching"] == {"sizes": [8, 16]} and table["folder"] == "m"
    text = to_toml(doc, "written by a test\n\nsecond line")
    assert text.startswith("# written by a test\n#\n# second line\nport = 9001\n")
    assert (
        "\n[batching]\nsizes = [8, 16]\n" in text
        and '\n[[inputs]]\nname = "x"\nshape = ["batch", 3]\n' in text
    )
    assert from_table(Doc, tomllib.loads(text), "f", given={"name": "not written"}) == doc
    assert to_toml(doc) == to_toml(doc)  # deterministic
    full = to_table(Doc(), defaults=True)
    assert (
        full["port"] == 8001 and full["batching"] == {"delay_us": 500, "sizes": []} and "folder" not in full
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", '"plain"'),
        ('quote " and \\ back', '"quote \\" and \\\\ back"'),
        ("line\nnext\ttab\x01", '"line\\nnext\\ttab\\u0001"'),
        ("naïve ✓", '"naïve ✓"'),
        (3, "3"),
        (0.5, "0.5"),
        (1e-5, "1e-05"),
        (True, "true"),
        ([1, "a"], '[1, "a"]'),
        ({"step": "fp16", "odd key": 1}, '{step = "fp16", "odd key" = 1}'),
    ],
)
def test_toml_values_read_back_the_same(value, text):
    assert toml_value(value) == text
    assert tomllib.loads(f"v = {text}")["v"] == value
