"""`make bench`: run every bench/bench_*.py (or those named: `run.py ct_block`);
each prints one JSON line per benchmark."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

names = sys.argv[1:]
scripts = sorted(HERE.glob("bench_*.py"))
if names:
    unknown = set(names) - {s.stem[len("bench_"):] for s in scripts}
    if unknown:
        sys.exit(f"bench/run.py: no benchmark named {', '.join(sorted(unknown))}")
    scripts = [s for s in scripts if s.stem[len("bench_"):] in names]
failed = 0
for script in scripts:
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode:
        failed += 1
        sys.stderr.write(f"{script.name} failed:\n{r.stderr}\n")
sys.exit(1 if failed else 0)
