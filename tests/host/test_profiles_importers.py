"""Importing GPU power logs (cabctl.profiles.importers + resample), from small files made here."""
from datetime import datetime, timedelta

import numpy as np
import pytest

from cabctl.profiles import ProfileError
from cabctl.profiles.config import JobConfig
from cabctl.profiles.generator import gpu_power
from cabctl.profiles.importers import read
from cabctl.profiles.resample import Options, build
from cabctl.profiles.stats import stats

T0 = datetime(2024, 5, 1, 12, 0, 0)
MW = 1_000_000


def stamp(s):
    return (T0 + timedelta(seconds=s)).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]


def nvidia_smi(path, watts, step=0.1, stall=None, suffix=True, index=False, seed=0):
    """watts[k, g]: GPU g at sample k; one block of rows per sample, GPUs in fixed order.

    stall=(start_s, len_s): the logger writes nothing then (as nvidia-smi does at times)."""
    rng = np.random.default_rng(seed)
    lines = ["timestamp, " + ("index, " if index else "") + "power.draw [W]"]
    for k, row in enumerate(watts):
        t = k * step
        if stall and stall[0] <= t < stall[0] + stall[1]:
            continue
        ts = stamp(t + rng.uniform(0, 0.003))
        for g, w in enumerate(row):
            lines.append(f"{ts}, " + (f"{g}, " if index else "") + f"{w:.2f}" + (" W" if suffix else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def node_log(seconds=300, gpus=8, seed=3):
    """Realistic per-GPU power of an 8 x 700 W training node at 100 ms."""
    job = JobConfig(period_s=0.9, compute_frac=0.55, comm_level=0.3, ckpt_every_s=45, ckpt_len_s=10)
    w = gpu_power(job, seconds, 100, seed=seed, gpu_w=700)
    rng = np.random.default_rng(seed)
    return w[:, None] * (1 + 0.02 * np.arange(gpus) / gpus) + rng.normal(0, 4, (len(w), gpus))


def constant(seconds, per_gpu, step=0.1):
    return np.tile(np.asarray(per_gpu, dtype=float), (int(round(seconds / step)), 1))


def imported(path, fmt, **opts):
    table = read(path, fmt, skip_bad=opts.pop("skip_bad", False), gpus=opts.pop("gpus", None))
    return (table, *build(table, Options(**opts)))


def raises_at(path, fmt, line, words, **kw):
    with pytest.raises(ProfileError) as e:
        read(path, fmt, **kw)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert words in str(e.value), str(e.value)


def test_nvidia_smi_w_suffix_and_gpu_blocks_without_index(tmp_path):
    path = nvidia_smi(tmp_path / "smi.csv", constant(5, [100 * (g + 1) for g in range(8)]))
    assert " W" in path.read_text().splitlines()[1]
    table, p, rep = imported(path, "nvidia-smi")
    assert [round(s.w.mean()) for s in table.series] == [100 * (g + 1) for g in range(8)]
    assert rep.series == 8 and rep.gpus_in_log == 8 and rep.step_ms == 100 and rep.gaps == []
    assert p.watts.min() == p.watts.max() == 3600 and p.duration_s == pytest.approx(5.0)


def test_nvidia_smi_with_index_column_in_any_order(tmp_path):
    path = nvidia_smi(tmp_path / "smi.csv", constant(3, [100, 200, 300, 400]), index=True, suffix=False)
    lines = path.read_text().splitlines()
    blocks = [lines[i:i + 4][::-1] for i in range(1, len(lines), 4)]      # GPUs listed backwards
    path.write_text("\n".join([lines[0]] + [x for b in blocks for x in b]) + "\n")
    table, p, _ = imported(path, "nvidia-smi")
    assert {s.name: round(s.w.mean()) for s in table.series} == \
        {"gpu 0": 100, "gpu 1": 200, "gpu 2": 300, "gpu 3": 400}
    assert p.watts.max() == 1000


@pytest.mark.parametrize("fill", ["hold", "interpolate"])
def test_logger_stall_is_filled_reported_and_not_a_step(tmp_path, fill):
    # 700 W per GPU, the logger stalls for 6 s, and when it resumes the GPUs are at 200 W.
    w = np.concatenate([constant(20, [700] * 8), constant(20, [200] * 8)])
    path = nvidia_smi(tmp_path / "smi.csv", w, stall=(14.0, 6.0))
    _, p, rep = imported(path, "nvidia-smi", gaps=fill)
    assert len(rep.gaps) == 1 and rep.gap_fill == fill
    g = rep.gaps[0]
    assert g["start_s"] == pytest.approx(13.9, abs=0.01) and g["len_s"] == pytest.approx(6.1, abs=0.01)
    inside = p.watts[int(14.5 / 0.1):int(19.5 / 0.1)]
    if fill == "hold":
        assert (inside == 5600).all()
    else:
        assert (np.diff(inside) < 0).all() and 1600 < inside.min() < inside.max() < 5600
    s = stats(p)
    assert s["gaps"] == 1 and s["gap_s"] == pytest.approx(6.1, abs=0.01)
    assert s["largest_step_w"] == 0 and s["largest_fall_1s_w"] == 0    # the stall is no load step
    assert p.watts[0] == 5600 and p.watts[-1] == 1600


def test_a_short_logger_hiccup_is_not_a_gap(tmp_path):
    w = constant(10, [500] * 8)
    _, p, rep = imported(nvidia_smi(tmp_path / "smi.csv", w, stall=(5.0, 0.3)), "nvidia-smi")
    assert rep.gaps == [] and (p.watts == 4000).all()


def test_missing_value_names_the_line_or_is_skipped_and_counted(tmp_path):
    path = nvidia_smi(tmp_path / "smi.csv", constant(3, [300] * 8))
    lines = path.read_text().splitlines()
    lines[12] = lines[12].split(",")[0] + ", [N/A]"
    path.write_text("\n".join(lines) + "\n")
    raises_at(path, "nvidia-smi", 13, "missing power value ([N/A])")
    table, p, rep = imported(path, "nvidia-smi", skip_bad=True)
    assert rep.skipped_lines == 2          # the value, then its block that lost a GPU
    assert "line 13: missing power value" in rep.skipped[0]
    assert (p.watts == 2400).all()


@pytest.mark.parametrize("row, words", [
    ("garbage", "malformed row: 1 fields"),
    ("2024/05/01 12:00:0X.100, 300 W", "malformed time"),
    ("2024/05/01 12:00:01.100, 3O0 W", "malformed power value '3O0'"),
    ("2024/05/01 12:00:01.100, 35000.00 W", "absurd power 35000 W for one GPU"),
    ("2024/05/01 12:00:01.100, -3.00 W", "negative power"),
    ("2024/05/01 12:00:01.100, ", "missing power value"),
])
def test_corrupt_lines_name_file_and_line(tmp_path, row, words):
    path = nvidia_smi(tmp_path / "smi.csv", constant(3, [300] * 2))
    lines = path.read_text().splitlines()
    lines[8] = row
    path.write_text("\n".join(lines) + "\n")
    raises_at(path, "nvidia-smi", 9, words)


def test_non_monotonic_time_names_the_line(tmp_path):
    path = nvidia_smi(tmp_path / "smi.csv", constant(3, [300] * 2))
    lines = path.read_text().splitlines()
    lines[9], lines[10] = (x.replace(stamp(0.4)[:21], stamp(0.1)[:21]) for x in lines[9:11])
    path.write_text("\n".join(lines) + "\n")
    raises_at(path, "nvidia-smi", 10, "time not increasing for gpu0")
    table = read(path, "nvidia-smi", skip_bad=True)
    assert len(table.skipped) == 2 and table.skipped[0][0] == 10


def test_unknown_layout_and_undecidable_blocks(tmp_path):
    path = tmp_path / "smi.csv"
    path.write_text("timestamp, temperature.gpu\n2024/05/01 12:00:00.000, 40\n")
    raises_at(path, "nvidia-smi", 1, "unknown column layout")
    rows = ["timestamp, power.draw [W]"]
    for k, n in enumerate([8, 7, 9, 6, 8, 5, 8, 9, 3, 8]):
        rows += [f"{stamp(k * 0.1)}, 100 W"] * n
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ProfileError, match="--gpus N"):
        read(path, "nvidia-smi")
    assert len(read(path, "nvidia-smi", gpus=8, skip_bad=True).skipped) == 6


def test_headerless_nvidia_smi_and_an_unnamed_time_column(tmp_path):
    path = nvidia_smi(tmp_path / "smi.csv", constant(2, [100, 200]))
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")   # --format=csv,noheader
    _, p, rep = imported(path, "nvidia-smi")
    assert (p.watts == 300).all() and "no header line" in rep.notes[0]
    wide = tmp_path / "w.csv"
    wide.write_text("Time (s),a,b\n0,1,2\n1,3,4\n")
    _, p, rep = imported(wide, "wide")
    assert p.watts.tolist() == [3, 7] and "first column" in rep.notes[0]


def test_long_format(tmp_path):
    rng = np.random.default_rng(1)
    rows = [(k * 0.1, g, 100.0 * (g + 1)) for k in range(50) for g in range(4)]
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rng.random()))
    path = tmp_path / "long.csv"
    path.write_text("time,gpu_id,power_w\n" + "".join(f"{rows[i][0]:.1f},{rows[i][1]},{rows[i][2]}\n"
                                                      for i in order))
    table, p, rep = imported(path, "long")
    assert rep.series == 4 and (p.watts == 1000).all()
    bad = tmp_path / "bad.csv"
    bad.write_text("when,who,what\n0,1,2\n")
    raises_at(bad, "long", 1, "long format needs time, gpu_id and power_w")


def test_wide_dcgm_style(tmp_path):
    path = tmp_path / "dcgm.csv"
    lines = ["Timestamp,GPU 0,GPU 1,GPU 2"] + [f"{k * 0.2:.1f},{200 + k},{300},{400}" for k in range(20)]
    path.write_text("\n".join(lines) + "\n")
    table, p, rep = imported(path, "wide")
    assert [s.name for s in table.series] == ["GPU 0", "GPU 1", "GPU 2"] and rep.step_ms == 200
    assert p.watts.tolist() == [900 + k for k in range(20)]
    lines[5] = "0.8,204,,400"
    path.write_text("\n".join(lines) + "\n")
    raises_at(path, "wide", 6, "missing power value")
    _, p, rep = imported(path, "wide", skip_bad=True)
    assert rep.skipped_lines == 1 and p.watts[4] == 903          # held over the skipped row


def test_plain_csv_is_a_site_series_resampled_by_averaging(tmp_path):
    path = tmp_path / "site.csv"
    path.write_text("time_s,power_w\n" + "".join(f"{k * 0.02:.2f},{12 * MW + k}\n" for k in range(100)))
    _, p, rep = imported(path, "csv", step_ms=100)
    assert p.watts.tolist() == [12 * MW + 5 * k + 2 for k in range(20)]     # mean of 5 samples each
    _, p, _ = imported(path, "csv", step_ms=10)                              # up-sampling holds
    assert p.watts[:4].tolist() == [12 * MW, 12 * MW, 12 * MW + 1, 12 * MW + 1]
    headerless = tmp_path / "nohdr.csv"
    headerless.write_text("0,1000\n1,2000\n2,3000\n")
    assert imported(headerless, "csv")[1].watts.tolist() == [1000, 2000, 3000]
    huge = tmp_path / "huge.csv"
    huge.write_text("time_s,power_w\n0,2000000000\n")
    raises_at(huge, "csv", 2, "absurd power 2e+09 W for a site")
    wide = tmp_path / "w.csv"
    wide.write_text("time_s,a,b\n0,1,2\n")
    raises_at(wide, "csv", 1, "--format wide")
    with pytest.raises(ProfileError, match="--gpus-per-node"):
        imported(path, "csv", scale_to_gpus=1024)


def test_parquet_long_wide_and_site(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    ts = [T0 + timedelta(seconds=k * 0.1) for k in range(30)]
    long = pa.table({"timestamp": pa.array([t for t in ts for _ in range(2)], pa.timestamp("ms")),
                     "gpu_id": [g for _ in ts for g in range(2)],
                     "power_w": [150.0 * (g + 1) for _ in ts for g in range(2)]})
    pq.write_table(long, tmp_path / "long.parquet")
    table, p, rep = imported(tmp_path / "long.parquet", "parquet")
    assert table.fmt == "parquet/long" and rep.series == 2 and (p.watts == 450).all()
    pq.write_table(pa.table({"time_s": [k * 0.5 for k in range(10)], "gpu0": [100.0] * 10,
                             "gpu1": [200.0] * 9 + [5000.0]}), tmp_path / "wide.parquet")
    with pytest.raises(ProfileError, match=r"wide.parquet:row 10: absurd power 5000 W"):
        read(tmp_path / "wide.parquet", "parquet")
    pq.write_table(pa.table({"time_s": [0.0, 1.0, 2.0], "power_w": [5e6, 6e6, 7e6]}),
                   tmp_path / "site.parquet")
    table, p, _ = imported(tmp_path / "site.parquet", "parquet")
    assert table.fmt == "parquet/csv" and p.watts.tolist() == [5 * MW, 6 * MW, 7 * MW]


def test_gpus_into_nodes_and_nodes_into_a_cluster(tmp_path):
    path = nvidia_smi(tmp_path / "smi.csv", constant(2, [10] * 8 + [20] * 8), index=True)
    _, p, rep = imported(path, "nvidia-smi", gpus_per_node=8)
    assert rep.nodes_in_log == 2 and (p.watts == 240).all()
    _, p, rep = imported(path, "nvidia-smi", gpus_per_node=8, nodes=3)      # nodes 0, 1, 0
    assert rep.copies == 3 and rep.gpus_out == 24 and (p.watts == 80 + 160 + 80).all()
    with pytest.raises(ProfileError, match="do not split into nodes of 6"):
        imported(path, "nvidia-smi", gpus_per_node=6)


def test_node_log_scaled_to_10240_gpus(tmp_path):
    table = read(nvidia_smi(tmp_path / "node.csv", node_log(), stall=(100.0, 5.0)), "nvidia-smi")
    node, _ = build(table, Options())
    sync, rep = build(table, Options(scale_to_gpus=10240, shift="none"))
    assert rep.copies == 1280 and rep.gpus_out == 10240 and len(rep.gaps) == 1
    assert sync.watts.mean() == pytest.approx(1280 * node.watts.mean(), rel=1e-3)
    assert sync.watts.max() == pytest.approx(1280 * node.watts.max(), rel=1e-3)    # worst case
    assert 4 * MW < sync.watts.mean() < 7 * MW             # 10,240 GPUs of 700 W, training
    rnd, rep = build(table, Options(scale_to_gpus=10240, shift="random", seed=5))
    rnd2, _ = build(table, Options(scale_to_gpus=10240, shift="random", seed=5))
    rnd3, _ = build(table, Options(scale_to_gpus=10240, shift="random", seed=6))
    assert rep.shift == "random"
    assert np.array_equal(rnd.watts, rnd2.watts) and not np.array_equal(rnd.watts, rnd3.watts)
    assert rnd.watts.mean() == pytest.approx(sync.watts.mean(), rel=0.01)
    s_sync, s_rnd = stats(sync), stats(rnd)
    assert s_sync["peak_to_mean"] > 1.4 and s_rnd["peak_to_mean"] < 1.15
    assert s_rnd["largest_rise_1s_w"] < 0.2 * s_sync["largest_rise_1s_w"]
    assert rnd.gaps == [] and "source_gaps" in rnd.meta     # stalls sit elsewhere in each copy
    pue, _ = build(table, Options(scale_to_gpus=10240, overhead=1.3))
    assert pue.watts.mean() == pytest.approx(1.3 * sync.watts.mean(), rel=0.02)
    nodes, rep = build(table, Options(nodes=1280))
    assert rep.gpus_out == 10240 and np.array_equal(nodes.watts, sync.watts)
