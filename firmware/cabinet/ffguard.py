# The feed-forward's guard on the grid's 1 s ramp. A pre-arm dips the real
# grid below the planned one while it waits for its step (a predicted drop
# bulges it), and the grid ramp is judged on 1 s block means, whose
# alignment is not known: a dip moves its block's mean by its area. What
# matters is not how much dipping there is but whether a block gets more of
# it than its neighbours (a steady rhythm dips every block alike), on top of
# what already moves the blocks: the planned grid's own ramp and the
# reaction transients of steps nobody foresaw. So the guard keeps the real
# grid of the last two seconds, as measured, in 50 ms slots, and allows a
# dip only as large as keeps every block that could hold it, at any
# alignment over the next second, within `lim` of the block before it (the
# real grid so far) and of the block after it (assumed at the plan: the
# rise may not come, and then the next block has no dip). Where the blocks
# already differ by lim, no dip is allowed at all. An announced step (a job
# hint) is not a guess: its dip is followed by its step, so only the block
# before counts for it (room_sure).
#
# Units as the engine's (8 W); areas in units x s. Grids and plans are
# clamped to |x| < 2**28 (2 GW) and the limit to 2**27, so a slot's area is
# < 2**24, a block's < 2**28 and every intermediate < 2**30 (31-bit safe,
# tests/test_dispatch_range.py).
from array import array

SLOT_MS = 50
NEW = 20          # slots in 1 s
SLOTS = 40        # the ring: two seconds, the newest slot being filled
BIG = (1 << 28) - 1


def clamp(x):
    return BIG if x > BIG else -BIG if x < -BIG else x


def area(u, ms):
    """u units held for 0 <= ms <= 1000 ms, in units x s (rounded towards 0)."""
    a = u if u >= 0 else -u
    a = a // 1000 * ms + a % 1000 * ms // 1000
    return a if u >= 0 else -a


class Guard:
    def __init__(self, lim):
        self.lim = lim if lim < 1 << 27 else 1 << 27     # units x s, > 0
        self.ring = array('i', [0] * SLOTS)
        self.plans = array('i', [0] * SLOTS)   # the plan as each slot began
        self.j = 0                    # the slot being filled
        self.ms = 0                   # ms into it
        self.new = 0                  # the NEW newest slots' total
        self.old = 0                  # the other slots' total
        self.room_sure = 0            # room() for an announced step

    def fill(self, grid):
        """Start as if the grid had been at `grid` units, as planned, for two seconds."""
        grid = clamp(grid)
        a = area(grid, SLOT_MS)
        for i in range(SLOTS):
            self.ring[i] = a
            self.plans[i] = grid
        self.new = a * NEW
        self.old = a * (SLOTS - NEW)
        self.ms = SLOT_MS

    def add(self, grid, plan, dt):
        """The real grid measured now (units), for the dt <= 1000 ms ending
        now; plan: the planned grid from now on. (A dt longer than a slot
        books its whole area in the newest slot: after a gap the blocks look
        uneven for two seconds, which only withholds pre-arms.)"""
        grid = clamp(grid)
        plan = clamp(plan)
        g = self.ring
        ms = self.ms + dt
        while ms > SLOT_MS:
            ms -= SLOT_MS
            j = self.j + 1
            if j >= SLOTS:
                j = 0
            self.old -= g[j]          # its oldest slot leaves the older second
            g[j] = 0
            self.plans[j] = plan
            k = j - NEW
            if k < 0:
                k += SLOTS
            self.new -= g[k]          # and one slot moves from the newer to the older
            self.old += g[k]
            self.j = j
        self.ms = ms
        a = area(grid, dt)
        g[self.j] += a
        self.new += a

    def room(self, plan, dip):
        """The largest dip (bulge if not `dip`) area the grid may take now,
        units x s, >= 0; plan: the planned grid (units)."""
        lim = self.lim
        g = self.ring
        c = self.j
        plan = clamp(plan)
        # The dip shows from the next slot on, so the blocks that can hold
        # it end 1..20 slots after the current one: the real grid so far,
        # the rest of the current slot and the slots after at the plan. The
        # block after a dip is at the plan, moved on as it moved over the
        # last second (only the way that widens the gap counts).
        step = plan // 20             # the plan for a slot
        i = c - NEW
        moved = clamp(plan - self.plans[i if i >= 0 else i + SLOTS])
        if (moved < 0) == dip:
            moved = 0
        cur = g[c] + area(plan, SLOT_MS - self.ms)        # the current slot, completed
        past = self.new - g[c] + cur                       # the second to its end
        after = plan + moved
        prev = self.old                                    # and the one before it
        room = lim
        sure = lim
        for k in range(1, NEW + 1):
            # Both blocks one slot on; the new slot at the plan.
            i = c - NEW + k
            x = cur if k == NEW else g[i if i >= 0 else i + SLOTS]
            i -= NEW
            past += step - x
            prev += x - g[i if i >= 0 else i + SLOTS]
            if dip:
                r = lim + past - prev    # it may fall from the block before by lim,
                r2 = lim - after + past  # and the block after may rise from it by lim
            else:
                r = lim - past + prev
                r2 = lim + after - past
            if r < sure:
                sure = r
            if r2 < r:
                r = r2
            if r < room:
                room = r
        self.room_sure = sure if sure > 0 else 0
        return room if room > 0 else 0
