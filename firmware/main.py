# Boot: board HAL, site config, then the control loop forever.
import sys
import hal
from cabinet import config
from cabinet.controller import Controller

board = hal.Board()
try:
    cfg = config.load(board.site_path)
except ValueError as e:
    # Keep telemetry and the PCS heartbeat alive, but never dispatch on a
    # config we could not read: the battery is held at 0 W until it is fixed.
    board.log('config rejected, dispatch disarmed: %s' % e)
    cfg = config.validate({'armed': False})
board.log('cabinet: board %s, cap %d W, period %d ms'
          % (board.cfg['name'], cfg['cap_w'], cfg['period_ms']))
try:
    Controller(board, cfg).run()
except KeyboardInterrupt:
    board.interrupted()               # Ctrl-C from the console (mpremote): to the REPL
    raise
except Exception as e:
    # Say why before dying: the PCS reverts to 0 W on its own once the
    # heartbeat stops, and the board's watchdog or supervisor restarts us.
    board.log('cabinet: fatal %s: %s' % (type(e).__name__, e))
    sys.print_exception(e)
    raise
