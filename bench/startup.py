"""Start-up time of `lit_ft --help` and `lit_ft tasks` against `python -c "import lightning"`, in one run.

Each command runs `--repeats` times in a fresh process (the first run of each is a warm-up, not counted); the
script prints the median wall time of each and its ratio to the Lightning import measured in the same run, so
the figure does not depend on how busy the machine is. Target: both under 3 s; the ratio shows how far from
"importing Lightning at all" they are.

    python bench/startup.py                 # 5 timed runs each
    python bench/startup.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 3.0


def lit_ft_command() -> list[str]:
    """The console script next to this interpreter, else `python -m lit_ft`."""
    script = shutil.which("lit_ft", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "lit_ft"]


def timed(cmd: list[str], repeats: int) -> float:
    """Median wall seconds of `cmd` over `repeats` fresh processes, after one untimed warm-up run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (median reported)")
    args = parser.parse_args(argv)
    lit_ft = lit_ft_command()
    cases = {
        "python -c 'import lightning' (baseline)": [sys.executable, "-c", "import lightning"],
        "lit_ft --help": [*lit_ft, "--help"],
        "lit_ft tasks": [*lit_ft, "tasks"],
    }
    results = {name: timed(cmd, args.repeats) for name, cmd in cases.items()}
    baseline = results["python -c 'import lightning' (baseline)"]
    print(f"{'command':<42} {'median s':>9} {'/ import lightning':>19}  target")
    for name, seconds in results.items():
        target = "" if "baseline" in name else (f"< {TARGET_S:.0f} s: " + ("ok" if seconds < TARGET_S else "MISSED"))
        print(f"{name:<42} {seconds:>9.2f} {seconds / baseline:>18.2f}x  {target}")


if __name__ == "__main__":
    main()
