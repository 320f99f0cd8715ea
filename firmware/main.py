# Boot: board HAL, stored site config, command channel, then the loop forever.
import gc
import sys
import hal
from cabinet import config, store

board = hal.Board()
cfg, source, problem = store.load(board.site_path, config.validate)
if cfg is None:
    # No config we can trust: keep telemetry, commands and the PCS heartbeat
    # alive, but never dispatch on guesses - the battery is held at 0 W
    # until a valid config arrives.
    cfg = config.validate({'armed': False})
if problem:
    board.log('config: %s; using %s' % (problem, source))
board.log('cabinet: board %s, cap %d W, period %d ms, config from %s'
          % (board.cfg['name'], cfg['cap_w'], cfg['period_ms'], source))
# The config module is the largest thing in the heap at boot and only
# set_config needs it again (it reloads it): gone before the rest loads.
config.unload()
del config
gc.collect()
from cabinet import events
from cabinet.controller import Controller
ctl = Controller(board, cfg)
gc.collect()                          # boot garbage (parsed maps, config) before the loop
# The command channel's code only now: building the controller is the boot's
# heap peak (parsed maps and telemetry.json beside its own objects).
from cabinet.auth import Auth
from cabinet.commands import Commands
ctl.config_source = source
# The replay counter lives beside the site config (the flash root on a board).
here = board.site_path.rsplit('/', 1)[0] + '/' if '/' in board.site_path else ''
ctl.commands = Commands(board, ctl, Auth(board.key_path, here + 'counter.txt'), board.site_path)
ctl.send_event(events.BOOT, {41: source, 44: problem})
try:
    ctl.run()
except KeyboardInterrupt:
    board.interrupted()               # Ctrl-C from the console (mpremote): to the REPL
    raise
except Exception as e:
    # Say why before dying: the PCS reverts to 0 W on its own once the
    # heartbeat stops, and the board's watchdog or supervisor restarts us.
    board.log('cabinet: fatal %s: %s' % (type(e).__name__, e))
    sys.print_exception(e)
    raise
