# Runs every test_* function of one test module on MicroPython and prints a
# pytest-like closing line. Exit status 1 if anything failed.
import sys

name = sys.argv[1]
mod = __import__(name)
passed = failed = 0
for fn_name in sorted(dir(mod)):
    if not fn_name.startswith('test_'):
        continue
    try:
        getattr(mod, fn_name)()
        passed += 1
        print('PASS', fn_name)
    except Exception as e:
        failed += 1
        print('FAIL', fn_name)
        sys.print_exception(e)
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
