# Host -> device commands on the console, one per line:
#
#   {"id": 7, "cmd": "set_config", "n": 1700000000123, "args": {"cap_w": 17000000}} <mac>
#
# The payload is JSON text (printable ASCII: json.dumps escapes control
# characters, so a command never holds 0x03, the byte that would interrupt
# the program); <mac> is HMAC-SHA256(device key, payload bytes) in hex, and
# "n" a counter that must grow. Read-only commands need neither. Every
# command gets a COMMAND_RESULT event frame back; rejected ones are counted
# and never applied.
#
# poll() runs every cycle and allocates nothing while no bytes arrive; a
# complete line is handled outside the steady state (it may allocate).
import json
from cabinet import devmap, dispatch, events, store

READ_ONLY = ('status', 'get_config')
# Every command (a cmd_<name> method below), looked up before getattr: getattr
# interns the name it is given (a qstr, never freed), so unique unknown names
# would fill the heap for good.
NAMES = ('status', 'get_config', 'set_config', 'dr', 'dr_clear', 'arm', 'disarm', 'reboot',
         'hint', 'share')
MAX_ID = (1 << 30) - 1     # "id" is echoed in the reply: a small int
# Keys that shape buffers and devices at boot: saved now, applied after a reboot.
AT_BOOT = ('period_ms', 'meter_map', 'meter_unit', 'pcs_map', 'pcs_unit', 'lock_heap',
           'max_cycles', 'response_timeout_ms')
OK, MALFORMED, UNKNOWN, REJECTED, INVALID, FAILED = 0, 1, 2, 3, 4, 5
CODES = ('ok', 'malformed', 'unknown_command', 'auth_rejected', 'invalid_value', 'failed')
MAX_LINE = 1024
MAX_W = 1000000000       # config.MAX_W (config is not kept loaded): DR limits up to 1 GW


class Commands:
    def __init__(self, board, ctl, auth, site_path):
        self.board = board
        self.ctl = ctl
        self.auth = auth
        self.site_path = site_path
        self.line = bytearray(MAX_LINE)
        self.n = 0
        self.too_long = False
        self.rx = bytearray(64)
        self.rx_i = 0          # rx[rx_i:rx_n] not looked at yet (the next line's start)
        self.rx_n = 0
        self.accepted = 0
        self.rejected = 0
        self.ready = False

    def poll(self):
        """Collect console bytes; True when a whole line waits for handle()."""
        if self.ready:
            return True
        rx = self.rx
        i = self.rx_i
        got = self.rx_n
        if i >= got:
            got = self.board.console_readinto(rx)
            self.rx_n = got
            i = 0
        while i < got:
            b = rx[i]
            i += 1
            if b == 10 or b == 13:
                if self.n or self.too_long:
                    self.rx_i = i      # the rest of this read is the next line's
                    self.ready = True
                    return True
            elif self.n < MAX_LINE:
                self.line[self.n] = b
                self.n += 1
            else:
                self.too_long = True
        self.rx_i = i
        return False

    def handle(self):
        text = bytes(self.line[:self.n])
        too_long = self.too_long
        self.n = 0
        self.too_long = False
        self.ready = False
        if too_long:
            return self._reply(None, MALFORMED, 'line longer than %d bytes' % MAX_LINE)
        payload = text
        mac = None
        if len(text) > 65 and text[-65] == 32:      # "<payload> <64 hex digits>"
            payload = text[:-65]
            mac = text[-64:]       # bytes: indexing a str would intern each character
            for c in mac:
                if not (48 <= c <= 57 or 97 <= c <= 102):
                    return self._reply(None, MALFORMED, 'MAC not 64 lowercase hex digits')
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeError) as e:
            return self._reply(None, MALFORMED, 'not JSON: %s' % e)
        if not isinstance(msg, dict) or not isinstance(msg.get('cmd'), str):
            return self._reply(None, MALFORMED, 'expected an object with "cmd"')
        cid = msg.get('id')
        if cid is not None and (type(cid) is not int or not 0 <= cid <= MAX_ID):
            # Echoed into the reply frame, so it must encode (no floats).
            return self._reply(None, MALFORMED, '"id" not an int 0..%d' % MAX_ID)
        cmd = msg['cmd']
        args = msg.get('args', {})
        if not isinstance(args, dict):
            return self._reply(cid, MALFORMED, '"args" must be an object')
        if cmd not in NAMES:
            return self._reply(cid, UNKNOWN, 'unknown command %r' % cmd)
        handler = getattr(self, 'cmd_' + cmd)
        if cmd not in READ_ONLY:
            why = self.auth.check(payload, msg.get('n'), mac or b'')
            if why:
                return self._reply(cid, REJECTED, why)
        try:
            code, message, data = handler(args)
        except (ValueError, TypeError, KeyError) as e:
            code, message, data = INVALID, str(e), None
        return self._reply(cid, code, message, data)

    def _reply(self, cid, code, message, data=None):
        if code == OK:
            self.accepted += 1
        else:
            self.rejected += 1
        self.ctl.send_event(events.COMMAND_RESULT,
                            {41: cid, 42: code == OK, 43: CODES[code], 44: message, 45: data})
        return code

    # --- the commands: each returns (code, message, data) ---

    def cmd_status(self, args):
        c = self.ctl
        out = {'state': c.state, 'cause': c.cause, 'armed': c.armed,
               'config_source': c.config_source, 'accepted': self.accepted,
               'rejected': self.rejected, 'dr_limit_w': c.dr_limit_w,
               'dr_left_ms': c.dr_left_ms, 'uptime_ms': c.uptime_ms}
        f = getattr(c, 'fleet', None)
        if f is not None:             # a fleet share: [dis_pm, cha_pm, coord_left_ms, lapsed]
            out['share'] = [f.dis_pm, f.cha_pm, f.coord_left_ms, f.lapsed]
        return OK, '', out

    def cmd_get_config(self, args):
        return OK, '', self.ctl.cfg

    def cmd_set_config(self, args):
        # Whole ({"config": {...}}) or by key; validated on the device against
        # the same rules as at boot; nothing is applied unless all of it holds.
        # (update(), not dict(cfg, **args): ** would intern every key it is given.)
        if 'config' in args:
            over = args['config']
        else:
            over = dict(self.ctl.cfg)
            over.update(args)
        from cabinet import config        # unloaded after boot (config.unload)
        try:
            new = config.validate(over, 'set_config')
            map_keys = config.MAP_KEYS
        finally:
            config.unload()
        i = 0
        for k in map_keys:
            # A map the device lacks would stop every boot (Controller loads it):
            # refuse it while commands can still fix the config.
            if new[k] != self.ctl.cfg[k] and (new[k] or i < 2):
                path = self.ctl.root + 'maps/%s.json' % new[k]
                try:
                    devmap.load_map(path)
                except OSError:
                    raise ValueError('set_config: %s: no %s' % (k, path))
            i += 1
        later = [k for k in AT_BOOT if new[k] != self.ctl.cfg[k]]
        store.save(self.site_path, new)
        self.ctl.apply_config(new)
        self.ctl.send_event(events.CONFIG_CHANGED, {41: 'command', 44: ', '.join(sorted(args))})
        return OK, ('saved; %s apply after a reboot' % ', '.join(later)) if later else 'applied', None

    def cmd_dr(self, args):
        limit = args['limit_w']
        secs = args['for_s']
        if type(limit) is not int or not 0 <= limit <= MAX_W:
            raise ValueError('limit_w must be an int in 0..%d' % MAX_W)
        if type(secs) is not int or not 1 <= secs <= 86400:
            raise ValueError('for_s must be an int in 1..86400')
        self.ctl.set_dr_limit(limit, secs * 1000)
        return OK, 'import limit %d W for %d s' % (limit, secs), None

    def cmd_dr_clear(self, args):
        self.ctl.set_dr_limit(dispatch.NO_LIMIT, 0)
        return OK, 'cleared', None

    def cmd_arm(self, args):
        return self.cmd_set_config({'armed': True})

    def cmd_disarm(self, args):
        return self.cmd_set_config({'armed': False})

    def cmd_reboot(self, args):
        self.ctl.reboot_requested = True
        return OK, 'rebooting', None

    def cmd_hint(self, args):
        # A job event as feed-forward: {"event": "job_start", "in_ms": 30000,
        # "power_w": 12000000, "window_ms": 250, "job": 7}, kept with its
        # expiry in the controller's cabinet.hints.Hints table (ctl.hints);
        # "clear" and "list" too. Arguments are checked in Hints.command.
        hints = getattr(self.ctl, 'hints', None)
        if hints is None:
            return FAILED, 'job hints need prediction on (pred_enabled)', None
        ok, message, data = hints.command(args)
        return (OK if ok else FAILED), message, data

    def cmd_share(self, args):
        # From the site coordinator (`cabctl site`): {"dis_pm": 300, "cha_pm":
        # 200}, this cabinet's shares of the site's correction while
        # discharging / charging, until coord_timeout_ms without a new one.
        if not self.ctl.cfg['coord_timeout_ms']:
            return FAILED, 'coord_timeout_ms is 0: no coordinator', None
        dis = args['dis_pm']
        cha = args['cha_pm']
        for v in (dis, cha):
            if type(v) is not int or not 0 <= v <= 1000:
                raise ValueError('share: dis_pm, cha_pm: ints in 0..1000, got %r' % (v,))
        f = self.ctl.fleet_on()
        f.coordinate(dis, cha)
        return OK, 'share %d/%d pm, %d ms' % (dis, cha, f.timeout_ms), None
