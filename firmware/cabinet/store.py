# Configuration that survives power loss.
#
# A stored config is two lines: the JSON text, then "crc16=XXXX" over it.
# save() writes a temporary file and renames it over the old one (a rename is
# atomic on POSIX and on littlefs), after copying the old one to .bak; so at
# any moment the file is the old config or the new one, never half of each.
# load() takes the file if its CRC holds, else the backup, else nothing (the
# caller then runs safe defaults, disarmed) and says which it used.
import json
import os
from cabinet.crc16 import crc

FILE = 'file'
BACKUP = 'backup'
DEFAULTS = 'defaults'
SOURCES = (FILE, BACKUP, DEFAULTS)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def encode(cfg_dict):
    text = json.dumps(cfg_dict)
    b = text.encode()
    return '%s\ncrc16=%04x\n' % (text, crc(b, 0, len(b)))


def decode(data, where):
    """Config dict from a stored file's text; ValueError naming the problem."""
    lines = data.split('\n')
    text = lines[0]
    if len(lines) > 1 and lines[1].startswith('crc16='):
        b = text.encode()
        try:
            want = int(lines[1][6:], 16)
        except ValueError:
            raise ValueError('%s: bad crc line %r' % (where, lines[1]))
        if crc(b, 0, len(b)) != want:
            raise ValueError('%s: CRC mismatch (torn or corrupted write)' % where)
    elif len(lines) > 1 and ''.join(lines[1:]).strip():
        text = data                      # hand-written JSON over several lines
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ValueError('%s: not valid JSON (%s)' % (where, e))
    if not isinstance(d, dict):
        raise ValueError('%s: top level must be an object' % where)
    return d


def _read(path):
    with open(path) as f:
        return decode(f.read(), path)


def load(path, validate):
    """(cfg, source, problem): the validated config and where it came from."""
    problem = ''
    for p, source in ((path, FILE), (path + '.bak', BACKUP)):
        if not _exists(p):
            if source == FILE:
                problem = '%s: missing' % p
            continue
        try:
            return validate(_read(p), p), source, problem
        except ValueError as e:
            problem = problem or str(e)
    return None, DEFAULTS, problem


def save(path, cfg_dict):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(encode(cfg_dict))
    if _exists(path):
        # Keep the last good one as the backup (a copy: the rename below must
        # replace the original in one step).
        with open(path) as f:
            old = f.read()
        with open(path + '.bak.tmp', 'w') as f:
            f.write(old)
        os.rename(path + '.bak.tmp', path + '.bak')
    os.rename(tmp, path)
