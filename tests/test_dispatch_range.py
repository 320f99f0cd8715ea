"""Proof that the dispatch engine stays in 31-bit small-int range.

On 32-bit MicroPython a small int is -2**30 <= x < 2**30; anything outside
silently becomes a heap bigint (and allocates in the control loop). The x64
unix port has 63-bit small ints, so running there proves nothing. Instead this
test rewrites the engine's source: every arithmetic operation (binary,
augmented, unary minus) is wrapped in a check, and the checked engine is
driven over extreme configurations and inputs for sites up to 1 GW.
"""
import ast
import random
import sys
import types

import pytest

from cabctl.paths import FIRMWARE
from cabinet import config

SMALL_MIN, SMALL_MAX = -(1 << 30), (1 << 30) - 1
GW = 1_000_000_000


class RangeError(ArithmeticError):
    pass


def _chk(x):
    if type(x) is int and not SMALL_MIN <= x <= SMALL_MAX:
        raise RangeError(f"intermediate {x} leaves the 31-bit small-int range")
    return x


class Wrap(ast.NodeTransformer):
    def _call(self, node):
        return ast.Call(func=ast.Name("_chk", ast.Load()), args=[node], keywords=[])

    def visit_BinOp(self, node):
        self.generic_visit(node)
        return self._call(node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        return self._call(node) if isinstance(node.op, ast.USub) else node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        load = ast.parse(ast.unparse(node.target), mode="eval").body
        return ast.Assign(targets=[node.target],
                          value=self._call(ast.BinOp(load, node.op, node.value)))


def checked(name):
    path = FIRMWARE / "cabinet" / f"{name}.py"
    tree = ast.fix_missing_locations(Wrap().visit(ast.parse(path.read_text())))
    mod = types.ModuleType(f"cabinet.{name}")
    mod._chk = _chk
    mod.__file__ = str(path)
    return mod, compile(tree, str(path), "exec")


@pytest.fixture
def engine_cls(monkeypatch):
    import cabinet
    for name in ("tou", "ffguard"):
        mod, code = checked(name)
        exec(code, mod.__dict__)
        monkeypatch.setitem(sys.modules, f"cabinet.{name}", mod)
        monkeypatch.setattr(cabinet, name, mod, raising=False)
    disp, code = checked("dispatch")
    exec(code, disp.__dict__)
    return disp


def extreme(rng, lo, hi):
    """A boundary value or a random one in lo..hi."""
    v = rng.choice([lo, hi, lo + 1, hi - 1, (lo + hi) // 2, rng.randint(lo, hi)])
    return min(max(v, lo), hi)


def random_config(rng):
    cap = extreme(rng, 2, GW)
    rech = extreme(rng, 0, cap - 1)
    reserve = extreme(rng, 0, 9997)
    smin = extreme(rng, reserve + 1, 9998)
    smax = extreme(rng, smin + 1, 10000)
    rate = lambda: rng.choice([0, 1, 7, 999, 1000, 1001, 2_000_000, GW])
    over = {"cap_w": cap, "recharge_w": rech, "recharge_max_w": extreme(rng, 0, GW),
            "reserve_cpct": reserve, "soc_min_cpct": smin, "soc_max_cpct": smax,
            "soc_hyst_cpct": extreme(rng, 0, 2000), "export_limit_w": extreme(rng, 0, GW),
            "ramp_up_w_per_s": rate(), "ramp_down_w_per_s": rate(),
            "ramp_down_delay_ms": extreme(rng, 0, 600000), "slew_w_per_s": rate(),
            "grid_floor_w": rng.choice([0, 0, extreme(rng, 1, cap - 1)]),
            "tou": [{"start_min": 0},
                    {"start_min": 600, "arb_w": extreme(rng, -GW, GW), "grid_charge": rng.random() < 0.5},
                    {"start_min": 1200, "cap_w": cap, "recharge_w": rech}]}
    return config.validate(over)


def test_engine_stays_in_range_up_to_1_gw(engine_cls):
    rng = random.Random(20261128)
    steps = 0
    for _ in range(300):
        e = engine_cls.Engine(random_config(rng))
        for _ in range(300):
            e.step(extreme(rng, -GW, GW), extreme(rng, -GW, GW), extreme(rng, -100, 10100),
                   extreme(rng, 0, GW), extreme(rng, 0, GW),
                   rng.choice([0, 0, 1, 2, 3]), rng.randint(0, 1439),
                   rng.choice([engine_cls.NO_LIMIT, extreme(rng, 0, GW)]),
                   extreme(rng, -5, 3_600_000))
            steps += 1
    assert steps == 90_000


def test_the_check_itself_catches_overflow(engine_cls):
    # Far beyond the proven envelope (8 GW readings) the checked engine must
    # object, or the test above would prove nothing.
    e = engine_cls.Engine(config.validate({}))
    with pytest.raises(RangeError):
        e.step(8 * GW, 8 * GW, 5000, GW, GW, 0, 0, engine_cls.NO_LIMIT, 50)


# --- the feed-forward input and the predictor (cabinet/predict.py, fastrhythm.py, hints.py, slowrhythm.py, amdf.py) ---

def test_engine_with_feed_forward_stays_in_range_up_to_1_gw(engine_cls):
    rng = random.Random(20261129)
    for _ in range(150):
        cfg = random_config(rng)
        cfg["pred_min_grid_w"] = rng.choice([0, extreme(rng, 0, cfg["cap_w"] - 1)])
        cfg["pred_ff_ramp_pm"] = rng.choice([0, 500, 4000])          # the dip budget
        cfg["pred_ff_hold"] = rng.choice([False, True])
        cfg["pred_lead_ms"] = rng.choice([0, 75, 5000])              # its arm window
        cfg["pred_early_ms"] = rng.choice([0, 5000])
        cfg["pred_tick_ms"] = rng.choice([10, 1000])
        e = engine_cls.Engine(cfg)
        for _ in range(200):
            e.step(extreme(rng, -GW, GW), extreme(rng, -GW, GW), extreme(rng, -100, 10100),
                   extreme(rng, 0, GW), extreme(rng, 0, GW),
                   rng.choice([0, 0, 1, 2, 3]), rng.randint(0, 1439),
                   rng.choice([engine_cls.NO_LIMIT, extreme(rng, 0, GW)]),
                   extreme(rng, -5, 3_600_000),
                   rng.choice([0, extreme(rng, -GW, GW), extreme(rng, -GW, GW)]))
            assert abs(e.ff) < 1 << 28


@pytest.fixture
def predict_mod(monkeypatch):
    import cabinet
    for name in ("amdf", "hints", "slowrhythm", "fastrhythm"):
        dep, code = checked(name)
        exec(code, dep.__dict__)
        monkeypatch.setitem(sys.modules, f"cabinet.{name}", dep)
        monkeypatch.setattr(cabinet, name, dep, raising=False)
    mod, code = checked("predict")
    exec(code, mod.__dict__)
    return mod


def random_pred_config(rng):
    tick = rng.choice([10, 50, 50, 100, 1000])
    pmin = rng.choice([20, 300, 1000])
    return {"pred_enabled": True, "pred_tick_ms": tick,
            "pred_period_min_ms": pmin,
            "pred_period_max_ms": rng.choice([pmin + tick, 5000, 60000]),
            "pred_lead_ms": rng.choice([0, 75, 5000]), "pred_early_ms": rng.choice([0, 50, 5000]),
            "pred_late_ms": rng.choice([0, 50, 5000]),
            "pred_min_rise_w": rng.choice([0, 250_000, GW]),
            "pred_min_conf_pm": rng.choice([0, 500, 1000]),
            "pred_max_err_pm": rng.choice([0, 300, 1000]), "pred_drops": rng.random() < 0.5,
            "pred_slow_tick_ms": rng.choice([100, 2000, 60000]),
            "pred_slow_period_min_s": rng.choice([1, 10]),
            "pred_slow_period_max_s": rng.choice([20, 600, 3600]),
            # the dip budget the rhythm's rises are spread over
            "ramp_up_w_per_s": rng.choice([0, 2_000_000, GW]),
            "ramp_down_w_per_s": rng.choice([0, 1, GW]),
            "pred_ff_ramp_pm": rng.choice([0, 600, 4000])}


def extreme_loads(rng, n):
    """Square waves between the extremes, random jumps and constant stretches."""
    kind = rng.randrange(3)
    period = rng.randint(2, 120)
    out = []
    for k in range(n):
        if kind == 0:
            out.append(GW if k % period < period // 2 else -GW)
        elif kind == 1:
            out.append(extreme(rng, -GW, GW))
        else:
            out.append(GW if k < n // 2 else -GW)
    return out


def test_predictor_stays_in_range_up_to_1_gw(predict_mod):
    rng = random.Random(20261130)
    for _ in range(14):
        pr = predict_mod.Predictor(random_pred_config(rng))
        h = pr.hints
        for k, x in enumerate(extreme_loads(rng, 1500)):
            if k % 97 == 0:
                h.add(rng.randint(1, 6), extreme(rng, -600000, 86400000), extreme(rng, 0, GW),
                      extreme(rng, 0, 600000), rng.randint(0, 1 << 30 - 1))
            dt = extreme(rng, -5, 100_000)
            ff = pr.skip(dt) if k % 53 == 0 else pr.update(x, dt)
            assert abs(ff) < 1 << 30
        pr.period_ms(), pr.slow.period_ms(), pr.slow.rise_in_ms()
        assert 0 <= pr.fast.conf_pm <= 1000 and 0 <= pr.fast.err_pm <= 1000
