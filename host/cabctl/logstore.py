"""Telemetry files: CSV and Parquet with the schema's unit-suffixed column names.

Rows are tuples (host_time_s, then every schema field in key order; None
where a frame lacks a field, e.g. an older version). RotatingStore writes
numbered parts, telemetry-0001.csv / telemetry-0001.parquet, ..., and starts
a new part after a size or a duration; a part always holds whole batches, so
rows are never split, lost or repeated across parts, and part N of the CSV
holds exactly the rows of part N of the Parquet file.
"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

STEM = "telemetry"
FORMATS = ("csv", "parquet")


def columns(schema):
    """[(name, unit, arrow type)]: host_time_s, then the schema's fields in key order.

    Integers are int64 whatever the schema type: a CBOR fixed-width value is
    0 .. 2**32-1 or down to -2**32, and a bad frame must not stop the logger.
    """
    cols = [("host_time_s", "s", pa.float64())]
    for f in schema["fields"]:
        cols.append((f["name"], f.get("unit", ""), pa.int64()))
    return cols


def field_names(schema):
    return [f["name"] for f in schema["fields"]]


def arrow_schema(schema):
    fields = [pa.field(name, ty, metadata={"unit": unit} if unit else None)
              for name, unit, ty in columns(schema)]
    meta = {"telemetry_version": str(schema["version"]),
            "enums": json.dumps(schema.get("enums", {}))}
    return pa.schema(fields, metadata=meta)


def to_batch(rows, aschema):
    """Row tuples -> one Arrow record batch (columns in C, not per value in Python)."""
    cols = zip(*rows)
    return pa.record_batch([pa.array(c, type=f.type) for c, f in zip(cols, aschema)],
                           schema=aschema)


class CsvPart:
    """One CSV file, written by Arrow's CSV writer (empty cell = value not in the frame)."""

    def __init__(self, path, aschema):
        self.path = Path(path)
        self._f = open(self.path, "wb")
        self._f.write((",".join(aschema.names) + "\n").encode())
        self._w = pacsv.CSVWriter(self._f, aschema,
                                  write_options=pacsv.WriteOptions(include_header=False))

    @property
    def bytes(self):
        return self._f.tell()

    def write_batch(self, batch):
        self._w.write_batch(batch)
        self._f.flush()

    def close(self):
        self._w.close()
        self._f.close()


class ParquetPart:
    """One Parquet file; batches are gathered into row groups (readable once closed)."""

    def __init__(self, path, aschema, row_group=65536):
        self.path = Path(path)
        self._f = open(self.path, "wb")
        self._w = pq.ParquetWriter(self._f, aschema)
        self._batches = []
        self._buffered = 0
        self._written = 0
        self.row_group = row_group
        self._ncols = len(aschema)

    @property
    def bytes(self):
        """Bytes on disk, plus an estimate for the rows still buffered."""
        on_disk = self._f.tell()
        per_row = on_disk / self._written if self._written else 4 * self._ncols
        return int(on_disk + per_row * self._buffered)

    def write_batch(self, batch):
        self._batches.append(batch)
        self._buffered += batch.num_rows
        if self._buffered >= self.row_group:
            self._flush()

    def _flush(self):
        if self._batches:
            self._w.write_table(pa.Table.from_batches(self._batches), row_group_size=self._buffered)
            self._written += self._buffered
            self._batches, self._buffered = [], 0

    def close(self):
        self._flush()
        self._w.close()
        self._f.close()


class _Store:
    """Buffers rows and hands them to the open part(s) as Arrow batches,
    at least once every flush_s (host clock) or every batch_rows rows."""

    def __init__(self, schema, flush_s=1.0, batch_rows=8192):
        self.schema = schema
        self.aschema = arrow_schema(schema)
        self.flush_s = flush_s
        self.batch_rows = batch_rows
        self.files = []
        self.rows = 0                        # rows handed to the files
        self._rows = []
        self._t_flush = None

    def write(self, rows, now):
        if not rows:
            return
        if self._t_flush is None:
            self._t_flush = now
        self._rows += rows
        if len(self._rows) >= self.batch_rows or now - self._t_flush >= self.flush_s:
            self.flush(now)

    def flush(self, now=None):
        if self._rows:
            rows, self._rows = self._rows, []
            self._write_batch(to_batch(rows, self.aschema), len(rows), now)
            self.rows += len(rows)
        self._t_flush = now

    def close(self):
        self.flush()
        self._close_parts()


class SingleCsv(_Store):
    """One CSV file, no rotation (the demo's telemetry.csv, `cabctl log --csv FILE`)."""

    def __init__(self, path, schema, **kw):
        super().__init__(schema, **kw)
        self._part = CsvPart(path, self.aschema)
        self.files = [self._part.path]

    def current(self):
        return self._part.path.name

    def _write_batch(self, batch, n, now):
        self._part.write_batch(batch)

    def _close_parts(self):
        self._part.close()


class RotatingStore(_Store):
    """Numbered parts in out_dir, in one or both formats, rotated by size or duration.

    rotate_bytes: a new part once the largest file of the current one reaches
    this many bytes (Parquet: bytes written + an estimate for buffered rows);
    rotate_s: a new part once the current one spans this long (host clock).
    Parts change only between batches, so a part never ends mid-row. In a
    folder that has parts already, numbering continues after the last one.
    """

    def __init__(self, out_dir, schema, formats=FORMATS, rotate_bytes=None, rotate_s=None,
                 stem=STEM, row_group=65536, **kw):
        bad = set(formats) - set(FORMATS)
        if bad or not formats:
            raise ValueError(f"formats must be some of {', '.join(FORMATS)}, not {sorted(bad)}")
        super().__init__(schema, **kw)
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.formats = tuple(f for f in FORMATS if f in formats)
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.stem = stem
        self.row_group = row_group
        if rotate_bytes:
            # Overshoot by at most ~1/16 of the limit: smaller batches and row groups.
            rows_per_16th = max(16, int(rotate_bytes) // (16 * 8 * len(self.aschema)))
            self.batch_rows = min(self.batch_rows, rows_per_16th)
            self.row_group = min(self.row_group, 4 * rows_per_16th)
        if rotate_s:
            self.flush_s = min(self.flush_s, rotate_s / 4)
        self.seq = self._last_seq()         # a reused folder: new parts follow, none overwritten
        self._parts = []
        self._part_start = None

    def _last_seq(self):
        seqs = [0]
        for p in self.dir.glob(f"{self.stem}-*.*"):
            num = p.name[len(self.stem) + 1:].split(".")[0]
            if num.isdigit() and p.suffix[1:] in FORMATS:
                seqs.append(int(num))
        return max(seqs)

    def current(self):
        """The part being (or last) written, e.g. telemetry-0002.{csv,parquet}."""
        seq = max(self.seq, 1)
        exts = self.formats[0] if len(self.formats) == 1 else "{" + ",".join(self.formats) + "}"
        return f"{self.stem}-{seq:04d}.{exts}"

    def _write_batch(self, batch, n, now):
        if now is None:
            now = self._part_start or 0.0
        if not self._parts:
            self._open(now)
        for p in self._parts:
            p.write_batch(batch)
        if ((self.rotate_bytes and max(p.bytes for p in self._parts) >= self.rotate_bytes)
                or (self.rotate_s and now - self._part_start >= self.rotate_s)):
            self._close_parts()             # the next batch opens the next part

    def _open(self, now):
        self.seq += 1
        self._part_start = now
        for fmt in self.formats:
            path = self.dir / f"{self.stem}-{self.seq:04d}.{fmt}"
            part = (CsvPart(path, self.aschema) if fmt == "csv"
                    else ParquetPart(path, self.aschema, self.row_group))
            self._parts.append(part)
            self.files.append(path)

    def _close_parts(self):
        for p in self._parts:
            p.close()
        self._parts = []


def part_files(folder, stem=STEM):
    """A run folder's telemetry files in order: Parquet parts, else CSV parts, else telemetry.csv."""
    folder = Path(folder)
    for pattern in (f"{stem}-*.parquet", f"{stem}-*.csv", f"{stem}.parquet", f"{stem}.csv"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    return []


def read_table(paths):
    """One pyarrow Table from telemetry CSV and/or Parquet files (parts concatenated in order)."""
    tables = []
    for p in paths:
        p = Path(p)
        if p.suffix == ".parquet":
            tables.append(pq.read_table(p))
        else:
            tables.append(pacsv.read_csv(p))
    if not tables:
        raise ValueError("no telemetry files")
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
