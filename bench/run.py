"""`make bench`: run every bench/bench_*.py; each prints one JSON line per benchmark."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

failed = 0
for script in sorted(HERE.glob("bench_*.py")):
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode:
        failed += 1
        sys.stderr.write(f"{script.name} failed:\n{r.stderr}\n")
sys.exit(1 if failed else 0)
