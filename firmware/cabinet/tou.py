# Time-of-use schedule: up to MAX_WINDOWS daily windows, each starting at a
# minute of the day and able to change the cap and the recharge threshold,
# allow or forbid grid charging, and set an arbitrage target (W, > 0
# discharge, < 0 charge). A window lasts until the next one starts; before
# the first start, the last window of the previous day still applies.
#
# Built once from the validated config; select() is per cycle and allocates
# nothing (preallocated arrays, the window is looked up only when the minute
# changes).
from array import array

MAX_WINDOWS = 12
KEYS = ('start_min', 'cap_w', 'recharge_w', 'grid_charge', 'arb_w')


class Schedule:
    def __init__(self, cfg, q):
        windows = cfg['tou'] or [{'start_min': 0}]
        n = len(windows)
        self.start = array('i', [w['start_min'] for w in windows])
        self._cap = array('i', [w.get('cap_w', cfg['cap_w']) >> q for w in windows])
        self._rech = array('i', [w.get('recharge_w', cfg['recharge_w']) >> q for w in windows])
        self._gc = array('b', [1 if w.get('grid_charge', True) else 0 for w in windows])
        self._arb = array('i', [w.get('arb_w', 0) >> q for w in windows])
        self.n = n
        self._minute = -1
        self.index = -1
        self.select(0)

    def select(self, minute):
        if minute == self._minute:
            return
        self._minute = minute
        i = self.n - 1                       # wraps from the previous day
        for k in range(self.n):
            if self.start[k] <= minute:
                i = k
        if i != self.index:
            self.index = i
            self.cap = self._cap[i]
            self.recharge = self._rech[i]
            self.grid_charge = self._gc[i] == 1
            self.arb = self._arb[i]


def validate(windows, base, where):
    """Check a 'tou' list; raise ValueError naming the window and key."""
    if not isinstance(windows, list) or len(windows) > MAX_WINDOWS:
        raise ValueError('%s: tou must be a list of at most %d windows' % (where, MAX_WINDOWS))
    last = -1
    for i, w in enumerate(windows):
        at = '%s: tou[%d]' % (where, i)
        if not isinstance(w, dict):
            raise ValueError('%s must be an object' % at)
        for k in w:
            if k not in KEYS:
                raise ValueError('%s: unknown key %r (known: %s)' % (at, k, ', '.join(KEYS)))
        start = w.get('start_min')
        if type(start) is not int or not 0 <= start <= 1439 or start <= last:
            raise ValueError('%s: start_min must be an int in 0..1439, after the previous '
                             'window (got %r)' % (at, start))
        last = start
        for k in ('cap_w', 'recharge_w'):
            if k in w and (type(w[k]) is not int or not 0 <= w[k] <= base['max_w']):
                raise ValueError('%s: %s must be an int in 0..%d' % (at, k, base['max_w']))
        if 'arb_w' in w and (type(w['arb_w']) is not int or abs(w['arb_w']) > base['max_w']):
            raise ValueError('%s: arb_w must be an int in -%d..%d' % (at, base['max_w'], base['max_w']))
        if 'grid_charge' in w and type(w['grid_charge']) is not bool:
            raise ValueError('%s: grid_charge must be true or false' % at)
        cap = w.get('cap_w', base['cap_w'])
        rech = w.get('recharge_w', base['recharge_w'])
        if rech >= cap:
            raise ValueError('%s: recharge_w (%d) must be below cap_w (%d)' % (at, rech, cap))
