"""Property-based tests of the two loaders that read what users and crashed processes leave:
the config (JSON files and --set strings) and the run log."""

import json
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebm.config import ConfigError, EBMConfig
from runs.logs import LogReader

KEYS = [f.name for f in fields(EBMConfig)]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), json_values, max_size=4))
def test_config_from_any_json_is_valid_or_one_clear_error(data):
    try:
        cfg = EBMConfig.from_dict(data)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
        return
    assert EBMConfig.from_json(cfg.to_json()) == cfg  # whatever is accepted round-trips


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(KEYS).flatmap(lambda k: st.text(max_size=10).map(lambda v: f"{k}={v}")) | st.text(max_size=12), max_size=3
    )
)
def test_overrides_from_any_strings_are_valid_or_one_clear_error(assignments):
    try:
        EBMConfig().with_overrides(assignments)
    except ConfigError as err:
        assert "\n" not in str(err)


good_records = st.fixed_dictionaries(
    {"type": st.sampled_from(["batch", "eval", "alert"]), "step": st.integers(0, 10**6), "x": st.floats(allow_nan=False)}
)
bad_records = st.one_of(  # parse as JSON, but lack what every reader indexes on
    st.fixed_dictionaries({"type": st.sampled_from(["batch", "meta"])}),
    st.fixed_dictionaries({"type": st.just("batch"), "step": st.text(max_size=3) | st.booleans() | st.floats()}),
    st.lists(st.integers(), max_size=2),
)
lines = st.one_of(
    good_records.map(lambda r: json.dumps(r) + "\n"),
    bad_records.map(lambda r: json.dumps(r) + "\n"),
    st.text(max_size=30).filter(lambda t: "\n" not in t).map(lambda t: t + "\n"),  # garbage lines
    st.just("\n"),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, max_size=12), st.lists(st.integers(1, 200), min_size=1, max_size=8), st.integers(8, 400))
def test_log_reader_in_any_pieces_reads_exactly_the_complete_valid_lines(tmp_path_factory, content, cuts, max_bytes):
    path = tmp_path_factory.mktemp("log") / "r.jsonl"
    data = "".join(content).encode()
    expected = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("type"), str) and type(record.get("step")) is int:
            expected.append(record)
    reader, written = LogReader(path), 0
    path.write_bytes(b"")
    for cut in [*cuts, len(data)]:  # the writer appends in arbitrary pieces, the reader polls between them
        end = min(len(data), written + cut)
        with open(path, "ab") as fh:
            fh.write(data[written:end])
        written = end
        reader.read_new(max_bytes=max_bytes)
    while True:  # a chunk of only invalid lines returns no record but still moves the offset
        before = reader.offset
        reader.read_new(max_bytes=max_bytes)
        if reader.offset == before:
            break
    assert reader.records == expected
