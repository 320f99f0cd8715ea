"""CSV and Parquet files of `cabctl log`: columns, values, rotation without loss or repeats."""
import csv
import random

import pyarrow.parquet as pq
import pytest

from cabctl import logstore
from cabctl.log import Logger
from cabctl.paths import TELEMETRY_SCHEMA
from cabctl.telemetry import load_schema
from cabinet import telemetry as ft          # the firmware module (tests/conftest.py)

SCHEMA = load_schema()
FW_SCHEMA = ft.load_schema(str(TELEMETRY_SCHEMA))
NAMES = [f["name"] for f in SCHEMA["fields"]]


def frames(n, seed=1):
    """(wire bytes, the values of each frame) for n frames with varied, some negative, values."""
    rng = random.Random(seed)
    f = ft.Frame(FW_SCHEMA)
    wire, recs = bytearray(), []
    for seq in range(1, n + 1):
        vals = {"version": FW_SCHEMA["version"], "seq": seq}
        for fd in FW_SCHEMA["fields"][2:]:
            lo = -(1 << 29) if fd["type"] == "int" else 0
            vals[fd["name"]] = rng.randint(lo, (1 << 29) - 1)
        for name, v in vals.items():
            f.put(f.index(name), v)
        wire += f.seal()
        recs.append(vals)
    return bytes(wire), recs


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def feed(logger, wire, chunk=997, clock=None, dt=0.05):
    for i in range(0, len(wire), chunk):
        logger.feed(wire[i:i + chunk])
        if clock:
            clock.t += dt


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_columns_are_the_schemas_unit_suffixed_names():
    cols = logstore.columns(SCHEMA)
    assert [c[0] for c in cols] == ["host_time_s"] + NAMES
    assert {"grid_w", "battery_w", "soc_cpct", "cycle_us", "uptime_ms", "cap_w"} <= set(NAMES)
    units = dict((c[0], c[1]) for c in cols)
    assert units["grid_w"] == "W" and units["soc_cpct"] == "0.01%" and units["host_time_s"] == "s"


def test_csv_and_parquet_match_the_frames(tmp_path):
    wire, recs = frames(300)
    store = logstore.RotatingStore(tmp_path, SCHEMA)
    log = Logger(store=store, quiet=True, keep_frames=False)
    feed(log, wire)
    log.close()
    assert [p.name for p in store.files] == ["telemetry-0001.csv", "telemetry-0001.parquet"]
    table = pq.read_table(tmp_path / "telemetry-0001.parquet")
    assert table.column_names == ["host_time_s"] + NAMES
    assert table.schema.field("grid_w").metadata == {b"unit": b"W"}
    assert table.schema.metadata[b"telemetry_version"] == str(SCHEMA["version"]).encode()
    got = table.to_pylist()
    assert len(got) == 300
    for row, want in zip(got, recs):
        assert {k: row[k] for k in NAMES} == want
        assert isinstance(row["host_time_s"], float)
    rows = read_csv(tmp_path / "telemetry-0001.csv")
    assert list(rows[0]) == ["host_time_s"] + NAMES
    assert [{k: int(r[k]) for k in NAMES} for r in rows] == recs
    assert [float(r["host_time_s"]) for r in rows] == [r["host_time_s"] for r in got]


def test_missing_fields_are_empty_not_zero(tmp_path):
    store = logstore.RotatingStore(tmp_path, SCHEMA)
    old = (1.0, 1, 7) + (None,) * (len(NAMES) - 2)         # a frame of an older, shorter version
    store.write([old], 1.0)
    store.close()
    row = pq.read_table(tmp_path / "telemetry-0001.parquet").to_pylist()[0]
    assert row["seq"] == 7 and row["grid_w"] is None
    assert read_csv(tmp_path / "telemetry-0001.csv")[0]["grid_w"] == ""


def _all_rows(store):
    csvs = [p for p in store.files if p.suffix == ".csv"]
    pqs = [p for p in store.files if p.suffix == ".parquet"]
    csv_rows = [[int(r["seq"]) for r in read_csv(p)] for p in csvs]
    pq_rows = [pq.read_table(p).column("seq").to_pylist() for p in pqs]
    return csv_rows, pq_rows


def test_rotation_by_size_loses_and_repeats_nothing(tmp_path):
    wire, recs = frames(3000)
    store = logstore.RotatingStore(tmp_path, SCHEMA, rotate_bytes=50_000)
    clock = Clock()
    log = Logger(store=store, quiet=True, keep_frames=False, clock=clock)
    feed(log, wire, chunk=1000, clock=clock)
    log.close()
    csv_rows, pq_rows = _all_rows(store)
    assert len(csv_rows) >= 4, [len(r) for r in csv_rows]
    assert csv_rows == pq_rows                                 # part N holds the same rows in both
    assert [s for part in csv_rows for s in part] == list(range(1, 3001))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[:4] == ["telemetry-0001.csv", "telemetry-0001.parquet",
                         "telemetry-0002.csv", "telemetry-0002.parquet"]
    for p in store.files[:-2]:                                  # full parts: near the limit
        if p.suffix == ".csv":
            assert 50_000 <= p.stat().st_size < 50_000 * 1.2, p


def test_rotation_by_duration(tmp_path):
    wire, recs = frames(1200)                                   # 1200 frames, 0.05 s per chunk
    store = logstore.RotatingStore(tmp_path, SCHEMA, formats=("parquet",), rotate_s=2.0)
    clock = Clock()
    log = Logger(store=store, quiet=True, keep_frames=False, clock=clock)
    feed(log, wire, chunk=250, clock=clock)                     # ~2 frames per chunk
    log.close()
    parts = [pq.read_table(p) for p in store.files]
    assert all(p.suffix == ".parquet" for p in store.files) and len(parts) >= 4
    seqs = [s for t in parts for s in t.column("seq").to_pylist()]
    assert seqs == list(range(1, 1201))
    for t in parts[:-1]:
        span = max(t.column("host_time_s").to_pylist()) - min(t.column("host_time_s").to_pylist())
        assert 1.5 <= span <= 3.0, span


def test_single_csv_store(tmp_path):
    wire, recs = frames(50)
    log = Logger(tmp_path / "t.csv", quiet=True)
    feed(log, wire)
    log.close()
    rows = read_csv(tmp_path / "t.csv")
    assert [int(r["seq"]) for r in rows] == list(range(1, 51))
    assert len(log.frames) == 50 and log.frames[-1]["seq"] == 50


def test_bad_formats_are_refused(tmp_path):
    with pytest.raises(ValueError, match="formats"):
        logstore.RotatingStore(tmp_path, SCHEMA, formats=("xlsx",))


def test_part_files_and_read_table(tmp_path):
    wire, recs = frames(500)
    store = logstore.RotatingStore(tmp_path, SCHEMA, rotate_bytes=20_000)
    log = Logger(store=store, quiet=True, keep_frames=False)
    feed(log, wire)
    log.close()
    parts = logstore.part_files(tmp_path)
    assert parts and all(p.suffix == ".parquet" for p in parts)          # Parquet preferred
    assert logstore.read_table(parts).column("seq").to_pylist() == list(range(1, 501))
    csvs = sorted(tmp_path.glob("telemetry-*.csv"))
    assert logstore.read_table(csvs).column("seq").to_pylist() == list(range(1, 501))


def test_a_reused_folder_gets_new_parts(tmp_path):
    for n in (10, 20):
        wire, _ = frames(n)
        store = logstore.RotatingStore(tmp_path, SCHEMA)
        log = Logger(store=store, quiet=True, keep_frames=False)
        feed(log, wire)
        log.close()
    assert [p.name for p in store.files] == ["telemetry-0002.csv", "telemetry-0002.parquet"]
    assert len(read_csv(tmp_path / "telemetry-0001.csv")) == 10
    assert len(read_csv(tmp_path / "telemetry-0002.csv")) == 20
