# Announced job events (job hints): a preallocated table the command
# channel fills (`hint` command, `cabctl hint`), each with a kind, a due
# time, a power step and a window after the due time. Every cycle step()
# ages them and returns the rise (and drop) armed now, for the predictor
# (cabinet.predict) to add to its rhythm's feed-forward. A hint arms from
# lead_ms before it is due, with the part of its step not seen yet, until
# 7/8 of the step has come or its window after the due time has passed;
# then it is dropped. Pure integer code, no allocation per step.
#
# Whether the step came is judged against the load's rhythm where it has
# one: a 1.5 MW job that starts just as a 12 MW iteration edge of another
# job comes would otherwise be taken as come by that edge and dropped, its
# own step then landing unforeseen. So while the rhythm holds, the predictor
# gives step() the load one period ago at this phase (the lowest and
# highest of +-1 tick, for the period's jitter) and only what the rhythm
# does not explain counts: for a rise, the load over the highest reference
# now against the lowest load over the lowest reference since it armed (a
# drop alike, the other way). Without a rhythm, the load against the load
# when it armed, or the cycle before where that is lower (higher for a
# drop): a hint due within the cycle it arms on may find its step
# arriving. `came` reports the steps that came this cycle (units, rises
# > 0, drops < 0): the rhythm's history lacks them for a period.
#
# Units: powers in W at the API, 8 W inside (as the engine); times in ms.
from array import array

Q = 3
LIM = (1 << 27) - 1          # |load| clamp in units (~1.07 GW)

# Hint kinds: rises 1..3, drops 4..6 (the command channel's names).
JOB_START = 1
CKPT_END = 2
MAINT_END = 3
CKPT_START = 4
JOB_END = 5
MAINT = 6
KINDS = ('', 'job_start', 'ckpt_end', 'maint_end', 'ckpt_start', 'job_end', 'maint')
MAX_HINTS = 8


class Hints:
    """Announced job events: kind, due time (ms from now, counting down),
    power step (W, > 0), window after the due time (ms), job id."""

    def __init__(self, n=MAX_HINTS):
        self.n = n
        self.kind = array('b', [0] * n)          # 0 = free slot
        self.due = array('i', [0] * n)           # ms until the event (< 0: overdue)
        self.power = array('i', [0] * n)         # W, the size of the step
        self.window = array('i', [0] * n)        # ms the hint stays armed after due
        self.job = array('i', [0] * n)
        self.base = array('i', [0] * n)          # load (units) when it armed
        self.nbase = array('i', [0] * n)         # and its residual against the rhythm
        self.armed = array('b', [0] * n)         # 0 no, 1 yes, 2 and nbase holds
        self.added = 0                           # counters for status/telemetry
        self.seen = 0                            # the step came: consumed
        self.expired = 0                         # its window passed without the step
        self.dropped = 0                         # table full: the latest-due one replaced
        self.drops_seen = 0                      # announced drops that came
        self.last_drop = 0                       # the size of the last one (units)
        self.rise = 0                            # armed now (units), set by step()
        self.drop = 0
        self.came = 0                            # steps that came this cycle (units)
        self.last = 0                            # the load at the last step() (units)
        self.have_last = False

    def add(self, kind, in_ms, power_w, window_ms, job=0):
        """Store a hint (command channel; may run outside the steady state).
        Returns the slot used."""
        if not 1 <= kind <= 6:
            raise ValueError('hint kind must be 1..6')
        if not -600000 <= in_ms <= 86400000:
            raise ValueError('in_ms must be in -600000..86400000')
        if not 0 <= power_w <= 1000000000:
            raise ValueError('power_w must be in 0..1000000000')
        if not 0 <= window_ms <= 600000:
            raise ValueError('window_ms must be in 0..600000')
        slot = -1
        for i in range(self.n):
            if self.kind[i] == 0:
                slot = i
                break
        if slot < 0:                             # full: replace the one due last
            slot = 0
            for i in range(1, self.n):
                if self.due[i] > self.due[slot]:
                    slot = i
            self.dropped += 1
            if self.due[slot] <= in_ms:
                return -1                        # the new one is due last: not stored
        self.kind[slot] = kind
        self.due[slot] = in_ms
        self.power[slot] = power_w
        self.window[slot] = window_ms
        self.job[slot] = job
        self.base[slot] = 0
        self.armed[slot] = 0
        self.added += 1
        return slot

    def command(self, args):
        """The device command `hint` (cabinet/commands.py): args
        {"event": NAME, "in_ms": int, "power_w": int, "window_ms": int,
        "job": int, "for_ms": int}, NAME one of KINDS; "maint" with for_ms
        also stores its end (a rise back) for_ms later. {"event": "clear"}
        forgets all hints ({"job": J}: that job's); {"event": "list"} shows
        them. Returns (ok, message, data); raises ValueError on bad args."""
        ev = args.get('event')
        job = args.get('job', 0)
        if type(job) is not int or not 0 <= job <= 0x3FFFFFFF:
            raise ValueError('job must be an int in 0..1073741823')
        if ev == 'clear':
            n = self.clear(job if 'job' in args else -1)
            return True, 'cleared %d hints' % n, {'pending': self.count()}
        if ev == 'list':
            return True, '', {'pending': [[KINDS[self.kind[i]], self.due[i], self.power[i],
                                           self.window[i], self.job[i]]
                                          for i in range(self.n) if self.kind[i]],
                              'added': self.added, 'seen': self.seen,
                              'expired': self.expired, 'dropped': self.dropped}
        if ev not in KINDS or not ev:
            raise ValueError('event must be one of %s, clear, list' % ', '.join(KINDS[1:]))
        vals = []
        for key, default in (('in_ms', None), ('power_w', None), ('window_ms', 250),
                             ('for_ms', 0)):
            v = args.get(key, default)
            if type(v) is not int:
                raise ValueError('%s must be an int' % key)
            vals.append(v)
        in_ms, power, window, for_ms = vals
        kind = KINDS.index(ev)
        if kind == MAINT and not 0 <= for_ms <= 86400000 - in_ms:
            raise ValueError('for_ms must be in 0..86400000 - in_ms')
        if self.add(kind, in_ms, power, window, job) < 0:
            return False, 'hint table full (%d hints, all due sooner)' % self.n, None
        if kind == MAINT and for_ms:
            if self.add(MAINT_END, in_ms + for_ms, power, window, job) < 0:
                return False, 'hint table full: maintenance end not stored', None
        return True, '%s in %d ms, %d W' % (ev, in_ms, power), {'pending': self.count()}

    def clear(self, job=-1):
        """Forget every hint (job < 0) or those of one job. Returns how many."""
        k = 0
        for i in range(self.n):
            if self.kind[i] and (job < 0 or self.job[i] == job):
                self.kind[i] = 0
                k += 1
        return k

    def count(self):
        k = 0
        for i in range(self.n):
            if self.kind[i]:
                k += 1
        return k

    def age(self, dt_ms):
        """Advance the clocks without a load reading (no arming, no
        consumption); expired hints are dropped."""
        for i in range(self.n):
            if self.kind[i]:
                d = self.due[i] - dt_ms
                if d < -self.window[i]:
                    self.kind[i] = 0
                    self.expired += 1
                self.due[i] = d
        self.rise = 0
        self.drop = 0
        self.came = 0
        self.have_last = False

    def step(self, dt_ms, load, lead_ms, rhythm=False, lo=0, hi=0):
        """Advance by dt_ms at load (units); the armed rise and drop in units.
        rhythm: the load follows a rhythm now; lo, hi: its load one period
        ago at this phase, the lowest and highest of +-1 tick (units,
        |x| < 2**27)."""
        rise = 0
        drop = 0
        came = 0
        for i in range(self.n):
            kd = self.kind[i]
            if kd == 0:
                continue
            d = self.due[i] - dt_ms
            if d < -600000:
                d = -600000
            self.due[i] = d
            p = self.power[i] >> Q
            left = p                             # the part of the step still to come
            up = kd <= MAINT_END
            armed = self.armed[i]
            if armed:
                if rhythm and armed == 2:
                    moved = load - hi - self.nbase[i] if up else self.nbase[i] - load + lo
                else:
                    moved = load - self.base[i] if up else self.base[i] - load
                if moved >= p - (p >> 3):        # (7/8 of) the step came: consumed
                    self.kind[i] = 0
                    self.seen += 1
                    if moved > LIM:
                        moved = LIM
                    if up:
                        came += moved            # |came| <= LIM before, < 2**29 after
                    else:
                        came -= moved
                        self.drops_seen += 1
                        self.last_drop = p
                    if came > LIM:
                        came = LIM
                    elif came < -LIM:
                        came = -LIM
                    continue
                if moved > 0:
                    left = p - moved
            if d < -self.window[i]:
                self.kind[i] = 0
                self.expired += 1
                continue
            if d <= lead_ms:
                if not armed:
                    armed = 1
                    # Or the last cycle's load, where the step may be
                    # arriving already (else that part never counts as come).
                    b = load
                    if self.have_last and (self.last < b) == up:
                        b = self.last
                    self.base[i] = b
                if rhythm:
                    # The residual from its lowest since the rhythm was
                    # there (the highest for a drop): an edge of the rhythm
                    # near that moment leaves the reference unsure by a tick.
                    b = load - lo if up else load - hi
                    if armed == 1 or (b < self.nbase[i]) == up:
                        self.nbase[i] = b
                    armed = 2
                else:
                    armed = 1
                self.armed[i] = armed
                p = left
                if up:
                    rise += p
                    if rise > LIM:
                        rise = LIM
                else:
                    drop += p
                    if drop > LIM:
                        drop = LIM
        self.rise = rise
        self.drop = drop
        self.came = came
        self.last = load
        self.have_last = True
        return rise
