# Link health of one device on the bus: is its data still good enough to act
# on, and when should a failing device be polled again?
#
# A value stays usable through fail_limit - 1 consecutive errors (one lost
# frame on a noisy bus must not stop the battery) as long as it is younger
# than max_age_ms. After fail_limit errors the device is lost; it is then
# retried after retry_base_ms * (errors past the limit), capped at
# retry_max_ms, so a dead meter does not eat the bus time of the others.
# Integer milliseconds, no allocation.


class Link:
    def __init__(self, fail_limit, max_age_ms, retry_base_ms, retry_max_ms):
        self.fail_limit = fail_limit
        self.max_age_ms = max_age_ms
        self.retry_base_ms = retry_base_ms
        self.retry_max_ms = retry_max_ms
        self.fails = 0            # consecutive failed transactions
        self.age_ms = max_age_ms + 1  # since the last good read (nothing yet)
        self.wait_ms = 0          # until the next attempt while backing off
        self.last_error = 0       # modbus result code of the last failure
        self.errors = 0           # failed transactions since boot

    def tick(self, dt_ms):
        """Advance time; True if the device should be polled this cycle."""
        if self.age_ms <= self.max_age_ms:
            self.age_ms += dt_ms
        if self.wait_ms > 0:
            self.wait_ms -= dt_ms
            return self.wait_ms <= 0
        return True

    def ok(self):
        self.fails = 0
        self.age_ms = 0
        self.wait_ms = 0

    def failed(self, code):
        self.errors += 1
        self.last_error = code
        if self.fails < 0x3FFF:
            self.fails += 1
        if self.fails >= self.fail_limit:
            w = self.retry_base_ms * (self.fails - self.fail_limit + 1)
            self.wait_ms = w if w < self.retry_max_ms else self.retry_max_ms

    def valid(self):
        return self.fails < self.fail_limit and self.age_ms <= self.max_age_ms
