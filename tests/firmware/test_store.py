# Stored configuration: CRC, atomic replace, fallback to the backup, then to
# defaults; hand-written JSON without a CRC line still loads. Runs on CPython
# and MicroPython.
import os
from cabinet import config, store

DIR = '/tmp/cabinet-store-test-%d' % (os.urandom(2)[0] * 256 + os.urandom(1)[0])


def setup():
    try:
        os.mkdir(DIR)
    except OSError:
        pass
    for f in os.listdir(DIR):
        os.remove(DIR + '/' + f)
    return DIR + '/site.json'


def test_save_then_load_round_trip_with_backup():
    p = setup()
    a = config.validate({'cap_w': 17000000})
    b = config.validate({'cap_w': 16000000})
    store.save(p, a)
    store.save(p, b)
    cfg, source, problem = store.load(p, config.validate)
    assert (cfg['cap_w'], source, problem) == (16000000, store.FILE, '')
    with open(p + '.bak') as f:
        assert store.decode(f.read(), 'bak')['cap_w'] == 17000000


def test_corrupt_file_falls_back_to_backup_then_defaults():
    p = setup()
    store.save(p, config.validate({'cap_w': 17000000}))
    store.save(p, config.validate({'cap_w': 16000000}))
    with open(p) as f:
        text = f.read()
    with open(p, 'w') as f:
        f.write(text.replace('16000000', '16000001'))      # a flipped digit: CRC fails
    cfg, source, problem = store.load(p, config.validate)
    assert cfg['cap_w'] == 17000000 and source == store.BACKUP
    assert 'CRC mismatch' in problem
    with open(p + '.bak', 'w') as f:
        f.write('{"cap_w": 170')                          # torn
    cfg, source, problem = store.load(p, config.validate)
    assert cfg is None and source == store.DEFAULTS and 'CRC mismatch' in problem


def test_invalid_values_are_a_problem_not_a_config():
    p = setup()
    with open(p, 'w') as f:
        f.write('{"cap_w": 5, "recharge_w": 10}\n')       # hand-written, no CRC line
    cfg, source, problem = store.load(p, config.validate)
    assert cfg is None and 'recharge_w (10) must be below cap_w (5)' in problem


def test_hand_written_json_loads():
    p = setup()
    with open(p, 'w') as f:
        f.write('{\n  "cap_w": 12000000,\n  "recharge_w": 9000000\n}\n')
    cfg, source, problem = store.load(p, config.validate)
    assert cfg['cap_w'] == 12000000 and source == store.FILE


def test_missing_file_means_defaults():
    p = setup()
    cfg, source, problem = store.load(p, config.validate)
    assert cfg is None and source == store.DEFAULTS and 'missing' in problem
