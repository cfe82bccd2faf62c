#!/usr/bin/env python3
"""Peak memory of the tool's layer writer on a 1 GiB layer (a container that added a 1 GiB
file of random bytes and 2,000 small files), read path by path and from the whole file system.

Runs the measurement `measure_the_memory_of_a_1gib_layer` (an ignored engine test of the
library: it needs the machine's Docker engine and `debian:bookworm`) and appends its result to
bench/LAYERS.md. Usage: python3 bench/layers_rss.py
"""
import datetime
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    cmd = [
        "cargo", "test", "--release", "--features", "engine-tests", "--lib", "--",
        "--ignored", "--exact", "--nocapture",
        "execute::layers::engine_tests::measure_the_memory_of_a_1gib_layer",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    results = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not results:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        return 1
    rows = []
    for line in results:
        fields = dict(
            part.split("=", 1) for part in line[len("RESULT "):].replace('"', "").split(" ") if "=" in part
        )
        rows.append(fields)
    text = [f"\n## {datetime.date.today()}: a 1 GiB layer\n",
            "| read | tar | gzip blob | seconds | peak RSS of the writer (test process) |",
            "|---|---|---|---|---|"]
    for line, f in zip(results, rows):
        mode = line.split('mode="')[1].split('"')[0]
        text.append(
            f"| {mode} | {int(f['tar_bytes']) / 2**20:.0f} MiB | {int(f['blob_bytes']) / 2**20:.0f} MiB "
            f"| {f['seconds']} | {int(f['peak_rss_kib']) / 1024:.1f} MiB |"
        )
    report = "\n".join(text) + "\n"
    path = ROOT / "bench" / "LAYERS.md"
    if not path.exists():
        path.write_text("# The layer writer's memory\n\nWritten by `python3 bench/layers_rss.py`; goal: under 64 MiB.\n")
    with path.open("a") as f:
        f.write(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
