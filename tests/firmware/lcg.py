# A small linear congruential generator for the firmware tests and traces:
# CPython and MicroPython draw the same numbers from it, so a randomized run
# is the same run on both.


class Lcg:
    def __init__(self, seed):
        self.s = seed

    def next(self, n):
        # 0 <= result < n; 31-bit state, products stay in 63-bit on the hosts
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n
