"""The profile file format (cabctl.profiles.fileformat) and the public load()/Profile API."""
import gzip

import numpy as np
import pytest

from cabctl.profiles import Profile, ProfileError, load
from cabctl.profiles import fileformat

HEADER = "# cabinet-profile v1 step_ms=100 unit=W\n"


def write(tmp_path, text, name="p.prof"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_round_trip_keeps_step_watts_meta_and_gaps(tmp_path):
    p = Profile(0.05, np.array([0, 1, 15_000_000, 999_999_999]), name="x",
                meta={"source": "test  with   spaces"}, gaps=[(1.5, 4.25, "interpolate")])
    for name in ("a.prof", "a.prof.gz"):
        q = fileformat.read(fileformat.write(p, tmp_path / name))
        assert q.step_s == pytest.approx(0.05)
        assert q.watts.dtype == np.int64 and q.watts.tolist() == p.watts.tolist()
        assert q.name == "x" and q.meta["source"] == "test with spaces"
        assert q.gaps == [(1.5, 4.25, "interpolate")]
    with open(tmp_path / "a.prof.gz", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"


def test_text_is_header_then_one_integer_per_line(tmp_path):
    text = fileformat.dumps(Profile(0.1, [5, 6], name="n"))
    assert text.splitlines() == ["# cabinet-profile v1 step_ms=100 unit=W", "# name: n", "5", "6"]


def test_gzip_recognised_by_magic_whatever_the_name(tmp_path):
    path = tmp_path / "plain-name.prof"
    with gzip.open(path, "wt") as f:
        f.write(HEADER + "7\n8\n")
    assert fileformat.read(path).watts.tolist() == [7, 8]


def test_at_is_sample_and_hold_and_wraps():
    p = Profile(0.1, [10, 20, 30])
    assert p.duration_s == pytest.approx(0.3)
    assert [p.at(t) for t in (0.0, 0.05, 0.0999, 0.1, 0.25, 0.3, 0.35, 0.6 + 0.2)] == \
        [10, 10, 10, 20, 30, 10, 10, 30]
    assert isinstance(p.at(0.1), float)
    assert all(p.at(k * 0.1) == [10, 20, 30][k % 3] for k in range(1000))   # no float drift


@pytest.mark.parametrize("text, line, words", [
    ("hello\n1\n", 1, "not a cabinet profile"),
    ("# cabinet-profile v1 unit=W\n1\n", 1, "step_ms"),
    ("# cabinet-profile v1 step_ms=100 unit=kW\n1\n", 1, "unit=W"),
    ("# cabinet-profile v1 step_ms=0 unit=W\n1\n", 1, "out of range"),
    (HEADER + "1\n2\n3.5\n4\n", 4, "not an integer"),
    (HEADER + "1\n\n4\n", 3, "missing value"),
    (HEADER + "1\n-5\n", 3, "negative"),
    (HEADER + "# name: n\n1\n2000000000\n", 4, "absurd"),
    (HEADER + "# name: n\n", 3, "no samples"),
])
def test_bad_files_name_file_line_and_problem(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as e:
        fileformat.read(path)
    assert e.value.line == line and words in str(e.value)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert isinstance(e.value, ValueError)


def test_load_reads_files_scenarios_and_configs(tmp_path):
    path = write(tmp_path, HEADER + "# name: site\n100\n200\n")
    p = load(str(path))
    assert p.name == "site" and p.at(0.15) == 200
    q = load("steady", seed=3, seconds=12)
    assert q.name == "steady" and q.duration_s == pytest.approx(12) and q.watts.dtype == np.int64
    cfg = write(tmp_path, '{"step_ms": 100, "gpus": 16, "jobs": [{"gpus": 8}]}', "mini.json")
    r = load(str(cfg), seconds=5)
    assert r.name == "mini" and len(r.watts) == 50


def test_load_unknown_spec_says_what_exists():
    with pytest.raises(ProfileError, match="texas"):
        load("no-such-profile")
