from runs.logs import LogReader, RunLogger


def test_log_reader_partial_and_corrupt_lines(tmp_path):
    path = tmp_path / "run.jsonl"
    log = RunLogger(path)
    log.log("meta", 0, 0, config={})
    log.log("batch", 1, 0, loss=float("nan"))
    reader = LogReader(path)
    assert [r["type"] for r in reader.read_new()] == ["meta", "batch"]
    assert reader.records[1]["loss"] is None  # NaN is written as null: valid JSON
    with open(path, "a") as fh:
        fh.write('{"v":1,"type":"batch","step":2')  # a half-written line
    assert reader.read_new() == []
    with open(path, "a") as fh:
        fh.write(',"epoch":0}\nnot json\n')
    new = reader.read_new()
    assert [r["step"] for r in new] == [2] and reader.corrupt_lines == 1
    path.write_text('{"type":"meta","step":0}\n')  # rewritten, shorter: read again from the start
    assert len(reader.read_new()) == 1 and len(reader.records) == 1
