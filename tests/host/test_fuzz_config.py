"""Fuzz: the config loader - the firmware's own cabinet.config.validate and
cabinet.store.decode/load, run on CPython (same source as on the device).

Any JSON-ish overrides either validate into a complete config whose every
key is of its default's type and inside its range (and that the dispatch
engine accepts), or raise ValueError naming the problem. Any stored file
text decodes to an object or raises ValueError; store.load never raises and
falls back file -> backup -> defaults.
"""
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cabinet import config, dispatch, store, tou

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=1000,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalar = (st.none() | st.booleans() | st.integers(-(1 << 62), 1 << 62)
          | st.floats(allow_nan=False) | st.text(max_size=12))
value = st.recursive(scalar, lambda c: st.lists(c, max_size=4)
                     | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=10)


def edge(key):
    default, lo, hi = config.SPEC[key]
    if lo is None:
        return st.just(default) | value
    return st.sampled_from([default, lo, hi, lo - 1, hi + 1, True, float(lo)]) | st.integers(lo, hi)


window = st.fixed_dictionaries({}, optional={
    "start_min": st.integers(-2, 1441) | scalar, "cap_w": st.integers(-1, config.MAX_W + 1) | scalar,
    "recharge_w": st.integers(-1, config.MAX_W + 1), "grid_charge": st.booleans() | scalar,
    "arb_w": st.integers(-config.MAX_W - 1, config.MAX_W + 1), "other": scalar})


@st.composite
def overrides(draw):
    keys = draw(st.lists(st.sampled_from(sorted(config.SPEC)), max_size=8, unique=True))
    out = {k: draw(edge(k)) for k in keys}
    if draw(st.integers(0, 3)) == 0:
        out["tou"] = draw(st.lists(window, max_size=tou.MAX_WINDOWS + 1) | value)
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(max_size=10))] = draw(value)
    return out


def assert_sane(cfg):
    assert set(cfg) == set(config.SPEC)
    for k, (default, lo, hi) in config.SPEC.items():
        assert type(cfg[k]) is type(default), k
        if lo is not None:
            assert lo <= cfg[k] <= hi, k
    assert cfg["recharge_w"] < cfg["cap_w"]
    assert cfg["reserve_cpct"] < cfg["soc_min_cpct"] < cfg["soc_max_cpct"]
    # The engine is built from it without error and steps at the extremes.
    eng = dispatch.from_config(cfg)
    for g, b in ((config.MAX_W, -config.MAX_W), (-config.MAX_W, config.MAX_W), (0, 0)):
        sp = eng.step(g, b, 5000, config.MAX_W, config.MAX_W, 0, 600, dispatch.NO_LIMIT, 50)
        assert isinstance(sp, int) and abs(sp) <= config.MAX_W


@FUZZ
@given(overrides())
def test_validate_accepts_sane_or_names_the_problem(over):
    try:
        cfg = config.validate(over, "fuzz")
    except ValueError as e:
        assert str(e).startswith("fuzz")
        return
    assert_sane(cfg)


@FUZZ
@given(value)
def test_validate_on_any_json_value(v):
    if not isinstance(v, dict):                 # a whole config that is not an object
        with pytest.raises(ValueError, match="^x: must be an object"):
            config.validate(v, "x")
    try:
        cfg = config.validate(v if isinstance(v, dict) else {"tou": v}, "x")
    except ValueError as e:
        assert str(e)
        return
    assert_sane(cfg)


@FUZZ
@given(overrides())
def test_store_round_trip(over):
    try:
        cfg = config.validate(over)
    except ValueError:
        return
    text = store.encode(cfg)
    assert store.decode(text, "f") == json.loads(json.dumps(cfg))
    assert config.validate(store.decode(text, "f")) == cfg


@st.composite
def stored_texts(draw):
    cfg = config.validate({})
    text = store.encode(cfg)
    kind = draw(st.sampled_from(["flip", "truncate", "crc_line", "extra_lines", "raw", "hand"]))
    b = bytearray(text.encode())
    if kind == "flip":
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= draw(st.integers(1, 127))
    elif kind == "truncate":
        del b[draw(st.integers(0, len(b) - 1)):]
    elif kind == "crc_line":
        b = bytearray(text.split("\n")[0].encode() + b"\n" + draw(st.sampled_from(
            [b"crc16=", b"crc16=zz", b"crc16=ffffffffffffffffffff", b"crc16=-1", b"crc16= 12"])))
    elif kind == "extra_lines":
        b += draw(st.binary(max_size=50))
    elif kind == "raw":
        b = bytearray(draw(st.binary(max_size=300)))
    else:
        b = bytearray(json.dumps(draw(value), indent=draw(st.sampled_from([None, 1]))).encode())
    return bytes(b).decode("utf-8", "replace")


@FUZZ
@given(stored_texts() | st.text(max_size=300))
def test_store_decode_object_or_value_error(text):
    try:
        d = store.decode(text, "site.json")
    except ValueError as e:
        assert "site.json" in str(e)
        return
    assert isinstance(d, dict)


@FUZZ
@given(st.binary(max_size=400), st.binary(max_size=400) | st.none())
def test_store_load_never_raises(main, backup):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "site.json")
        with open(path, "wb") as f:
            f.write(main)
        if backup is not None:
            with open(path + ".bak", "wb") as f:
                f.write(backup)
        cfg, source, problem = store.load(path, config.validate)
        assert source in store.SOURCES
        if cfg is None:
            assert source == store.DEFAULTS and problem
        else:
            assert_sane(cfg)
        # config.load reads a plain site file the same way (boot without store).
        try:
            cfg2 = config.load(path)
        except ValueError as e:
            assert str(e)
        else:
            assert_sane(cfg2)
