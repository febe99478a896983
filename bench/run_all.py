"""Every benchmark in turn, each against its named baseline (`make bench`)."""

from __future__ import annotations

import subprocess
import sys

BENCHES = ["bench.rouge", "bench.evaluate", "bench.ingest_validate", "bench.train", "bench.orchestration"]


def main() -> int:
    failed = []
    for module in BENCHES:
        print(f"\n### python -m {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
