"""Fuzz: the profile importers (power logs -> Table -> Profile) and the
profile file format.

Arbitrary bytes and structured mutations of valid logs: each either imports
into sane figures (finite, non-negative watts within the limits, increasing
time) or is rejected with ProfileError naming the file and the problem -
never another exception, never a hang (hypothesis deadlines).
"""
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cabctl.profiles import MAX_SITE_W, ProfileError, fileformat, importers, resample

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=3000,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TEXT_FORMATS = ("nvidia-smi", "long", "wide", "csv")

VALID = {
    "nvidia-smi": ("timestamp, index, power.draw [W]\n"
                   + "".join(f"2024/05/01 12:00:{s:02d}.{ms:03d}, {g}, {300 + g * 7 + s} W\n"
                             for s in range(3) for ms in (0, 500) for g in range(2))),
    "long": "time, gpu_id, power_w\n" + "".join(f"{t / 10:.1f}, {g}, {400 + t}\n"
                                                for t in range(20) for g in range(2)),
    "wide": "time, gpu0, gpu1\n" + "".join(f"{t / 10:.1f}, {500 + t}, {510 - t}\n" for t in range(20)),
    "csv": "time_s, power_w\n" + "".join(f"{t / 10:.1f}, {15e6 + t * 1000:.0f}\n" for t in range(20)),
}
NASTY = ["", " ", "nan", "NaN W", "inf", "-inf", "1e400", "-5", "-0", "0x10", "1,5", "W",
         "9999999999999999999999", "2024/13/45 25:61:61", "2024-05-01T12:00:00Z", "\x00",
         "\ufeff", "😀", "1e-320", "12 mW", "3 kW", '"', "''", "\r", "5 W W", "+7",
         "1_000", "  42  ", "3.4028235e38"]


class tmpfile:
    def __init__(self, data, suffix=".csv"):
        self.data, self.suffix = data, suffix

    def __enter__(self):
        fd, self.path = tempfile.mkstemp(suffix=self.suffix)
        with os.fdopen(fd, "wb") as f:
            f.write(self.data if isinstance(self.data, bytes) else self.data.encode("utf-8",
                                                                                  "surrogatepass"))
        return Path(self.path)

    def __exit__(self, *exc):
        os.unlink(self.path)


def import_or_reject(data, fmt, skip_bad, gpus=None):
    """The CLI's path: read, then build a profile; only ProfileError may stop it."""
    with tmpfile(data) as path:
        try:
            table = importers.read(path, fmt, skip_bad=skip_bad, gpus=gpus)
        except ProfileError as e:
            assert str(path) in str(e) and e.problem, e
            return None
        for s in table.series:
            assert len(s.t) == len(s.w) > 0
            assert np.all(np.isfinite(s.t)) and np.all(np.isfinite(s.w)), s
            assert np.all(np.diff(s.t) > 0), "time not increasing"
            assert np.all(s.w >= 0) and np.all(s.w <= MAX_SITE_W), s.w
        try:
            prof, rep = resample.build(table, resample.Options())
        except ProfileError as e:
            assert e.problem
            return None
        assert prof.step_s > 0 and len(prof.watts)
        assert prof.watts.min() >= 0 and prof.watts.max() <= MAX_SITE_W
        return prof


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(TEXT_FORMATS), st.booleans())
def test_arbitrary_bytes_import_or_reject(data, fmt, skip_bad):
    import_or_reject(data, fmt, skip_bad)


@st.composite
def mutated_log(draw):
    fmt = draw(st.sampled_from(TEXT_FORMATS))
    lines = VALID[fmt].splitlines()
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["cell", "drop_cell", "add_cell", "dup_line", "del_line",
                                     "swap_lines", "garbage_line", "header"]))
        cells = lines[i].split(",")
        if kind == "cell":
            cells[draw(st.integers(0, len(cells) - 1))] = draw(st.sampled_from(NASTY) | st.text(max_size=12))
        elif kind == "drop_cell" and len(cells) > 1:
            del cells[draw(st.integers(0, len(cells) - 1))]
        elif kind == "add_cell":
            cells.append(draw(st.sampled_from(NASTY)))
        elif kind == "dup_line":
            lines.insert(i, lines[i])
        elif kind == "del_line" and len(lines) > 1:
            del lines[i]
            continue
        elif kind == "swap_lines":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "garbage_line":
            lines.insert(i, draw(st.text(max_size=40)))
        elif kind == "header":
            lines[0] = draw(st.sampled_from(["time", "time, power", "timestamp, power.draw [mW]",
                                              "power.draw [kW], timestamp", "gpu_id, gpu_id, x",
                                              "a,b,c,d", ""]))
            continue
        lines[i] = ",".join(cells)
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return fmt, sep.join(lines) + sep


@FUZZ
@given(mutated_log(), st.booleans(), st.sampled_from([None, 1, 2, 3]))
def test_mutated_logs_import_or_reject(case, skip_bad, gpus):
    fmt, text = case
    import_or_reject(text, fmt, skip_bad, gpus if fmt == "nvidia-smi" else None)


def test_valid_logs_import():
    for fmt, text in VALID.items():
        assert import_or_reject(text, fmt, False) is not None, fmt


@st.composite
def profile_files(draw):
    head = draw(st.sampled_from(["# cabinet-profile v1 step_ms=100 unit=W",
                                 "# cabinet-profile v1 unit=W step_ms=0.5",
                                 "# cabinet-profile v1 step_ms=0 unit=W",
                                 "# cabinet-profile v1 step_ms=nan unit=W",
                                 "# cabinet-profile v1 step_ms=1e309 unit=W",
                                 "# cabinet-profile v1 step_ms=100",
                                 "# cabinet-profile v1 step_ms=100 unit=W extra",
                                 "# cabinet-profile v2 step_ms=100 unit=W", ""]))
    meta = draw(st.lists(st.sampled_from(["# name: x", "# gap: start_s=1 len_s=2",
                                          "# gap: start_s=nan len_s=inf fill=interpolate",
                                          "# gap: nonsense", "# just a comment", "#:"]),
                         max_size=3))
    body = draw(st.lists(st.sampled_from(["0", "15000000", "1000000001", "-1", "1.5", "",
                                          " 7", "9" * 30, "nan", "x"]) | st.text(max_size=8),
                         max_size=20))
    return "\n".join([head, *meta, *body]) + draw(st.sampled_from(["", "\n", "\r\n"]))


@FUZZ
@given(st.one_of(profile_files(), st.text(max_size=500)))
def test_profile_files_read_or_reject(text):
    with tmpfile(text, suffix=".profile") as path:
        try:
            p = fileformat.read(path)
        except ProfileError as e:
            assert e.problem
            return
        assert p.step_s > 0 and np.isfinite(p.step_s)
        assert len(p.watts) and p.watts.min() >= 0 and p.watts.max() <= MAX_SITE_W
        # What reads back writes out and reads again the same.
        with tmpfile(fileformat.dumps(p), suffix=".profile") as again:
            q = fileformat.read(again)
        assert q.step_s == p.step_s and np.array_equal(q.watts, p.watts)


@FUZZ
@given(st.binary(max_size=600))
def test_profile_files_arbitrary_bytes(data):
    for suffix in (".profile", ".profile.gz"):
        with tmpfile(data, suffix=suffix) as path:
            try:
                fileformat.read(path)
            except ProfileError as e:
                assert e.problem


# --- findings, kept as regression tests ---------------------------------------

import pytest  # noqa: E402


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_regression_stray_carriage_return_is_a_profile_error(fmt):
    # A lone CR inside a line made csv.reader raise _csv.Error ('new-line character
    # seen in unquoted field'), which escaped instead of a ProfileError naming the
    # file and line (found by test_mutated_logs_import_or_reject).
    lines = VALID[fmt].splitlines(keepends=True)
    lines[2] = lines[2].replace(",", ",\r", 1)        # e.g. "0.1,\r 401" - a lone CR
    text = "".join(lines)
    with tmpfile(text) as path:
        with pytest.raises(ProfileError) as e:
            importers.read(path, fmt)
        assert e.value.line == 3 and "new-line character" in e.value.problem, e.value
        assert str(path) in str(e.value)
        table = importers.read(path, fmt, skip_bad=True)      # or skipped and counted
        assert [ln for ln, _ in table.skipped] == [3], table.skipped
    assert import_or_reject(text, fmt, skip_bad=True) is not None


def test_regression_time_jump_is_a_profile_error(monkeypatch):
    # A time column that jumps (seconds, then an ISO timestamp = 1.7e9 s) was
    # resampled to one slot per step over the whole span: np.arange(17e9) ->
    # MemoryError (found by test_mutated_logs_import_or_reject).
    text = VALID["wide"].replace("\n0.3,", "\n2024-05-01T12:00:00Z,", 1)
    with tmpfile(text) as path:
        table = importers.read(path, "wide", skip_bad=True)
    for gaps in ("hold", "interpolate"):
        with pytest.raises(ProfileError) as e:
            resample.build(table, resample.Options(gaps=gaps))
        assert "time jumps" in e.value.problem and e.value.line == 5, e.value
    assert import_or_reject(text, "wide", skip_bad=True) is None

    # The bound itself, made small: the span, and the interpolated fill of a
    # gap in one series beyond the span the series share (cut at the span).
    monkeypatch.setattr(resample, "MAX_STEPS", 100)

    def table_of(*ts):
        return importers.Table("x", "wide", [importers.Series(
            f"g{i}", np.array(t), np.full(len(t), 300.0), list(range(2, 2 + len(t))))
            for i, t in enumerate(ts)])
    ok = [0.0, 0.1, 0.2, 9.9]                          # 100 steps of 100 ms
    assert len(resample.build(table_of(ok), resample.Options())[0].watts) == 100
    with pytest.raises(ProfileError, match="101 steps"):
        resample.build(table_of([0.0, 0.1, 0.2, 10.0]), resample.Options())
    jump = [0.0, 0.1, 0.2, 1e9]
    prof, _ = resample.build(table_of(jump, [0.0, 0.1, 0.2, 0.3]), resample.Options(gaps="interpolate"))
    assert len(prof.watts) == 4
