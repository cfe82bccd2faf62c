#!/usr/bin/env python3
"""Benchmark: the tool's own push against the engine's, on the Debian+vim example, cold.

    python3 bench/push.py [--rounds N] [--binary PATH]

Per round, interleaved (the order of the two whole runs alternates), each against a registry
of its own that holds nothing (`docker-registry serve` on a free loopback port):

  tool apply     `pipeline apply --no-cache` of examples/debian-vim with an empty blob store:
                 the whole run, and its publish phase (from the commit line to the last push
                 line of its timestamped output)
  engine push    `docker push` of the same committed image, both tags (what apply did before)
  tool publish   `pipeline apply` again (everything cached) to a fresh registry: the publish
                 phase alone, the image already in the store
  cli script     the same steps with the docker CLI: run, exec, cp, commit, tag, push, rm

Writes bench/PUSH.md (with the date). Needs the engine, `docker-registry`, `debian:bookworm`
(scripts/setup.sh) and Debian's mirror (the apt step). Standard library only.
"""

import argparse
import datetime
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker"
EXAMPLE = REPO / "examples" / "debian-vim"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, env=None, check=True):
    started = time.monotonic()
    r = subprocess.run(cmd, text=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    took = time.monotonic() - started
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}")
    return took, r.stdout


class Registry:
    """A throwaway registry on a free 127.0.0.1 port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-push-registry-")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{s.getsockname()[1]}"
        s.close()
        config = Path(self.dir) / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/storage\n"
            f"http:\n  addr: {self.addr}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(self.addr.split(":"), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the registry did not start")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_timed(cmd, env):
    """Runs `cmd`, reading its output as it comes: the whole time, and the publish phase (from
    the moment the `image ...` line arrives to the moment the last push line arrives)."""
    started = time.monotonic()
    p = subprocess.Popen(cmd, text=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    start = end = None
    lines = []
    for line in p.stdout:
        now = time.monotonic()
        lines.append(line)
        words = line.split()
        if start is None and "image" in words[:2]:
            start = now
        if "pushed" in words[:2] or "up" in words[:2]:
            end = now
    p.wait()
    took = time.monotonic() - started
    if p.returncode != 0 or start is None or end is None:
        raise RuntimeError(f"{' '.join(cmd)} ({p.returncode}):\n{''.join(lines)}")
    return took, end - start


def tool_env(cache):
    env = dict(os.environ, XDG_CACHE_HOME=cache, PIPELINE_PROGRESS="plain")
    env.pop("NO_COLOR", None)
    return env


def tool_apply(binary, reg, version, cache, no_cache):
    args = [binary, "apply", str(EXAMPLE / "pipeline.toml"), "--var", f"registry={reg.addr}",
            "--var", f"version={version}"]
    if no_cache:
        args.append("--no-cache")
    return run_timed(args, tool_env(cache))


def engine_push(reg, image):
    total = 0.0
    for tag in ["1", "latest"]:
        ref = f"{reg.addr}/atguiguwh/myvim:{tag}"
        run([DOCKER, "tag", image, ref])
        took, _ = run([DOCKER, "push", ref])
        total += took
        run([DOCKER, "rmi", ref])
    return total


def cli_script(reg, version):
    name = f"bench-push-cli-{secrets.token_hex(4)}"
    vimrc = EXAMPLE / "files" / "vimrc"
    image = f"{reg.addr}/atguiguwh/myvim"
    started = time.monotonic()
    try:
        run([DOCKER, "run", "-d", "--name", name, "debian:bookworm", "sleep", "infinity"])
        run([DOCKER, "exec", "-e", "DEBIAN_FRONTEND=noninteractive", name, "sh", "-c",
             "apt-get update && apt-get install -y --no-install-recommends vim "
             "&& rm -rf /var/lib/apt/lists/*"])
        run([DOCKER, "cp", str(vimrc), f"{name}:/root/.vimrc"])
        run([DOCKER, "exec", name, "chmod", "0644", "/root/.vimrc"])
        run([DOCKER, "commit", "-a", "zzyy <zzyy@example.com>", "-m", f"debian with vim {version}",
             "-c", 'CMD ["vim"]', "-c", "ENV EDITOR=vim",
             "-c", f"LABEL org.opencontainers.image.version={version}", name, f"{image}:{version}"])
        run([DOCKER, "tag", f"{image}:{version}", f"{image}:latest"])
        run([DOCKER, "push", f"{image}:{version}"])
        run([DOCKER, "push", f"{image}:latest"])
    finally:
        run([DOCKER, "rm", "-f", name], check=False)
    took = time.monotonic() - started
    run([DOCKER, "rmi", f"{image}:{version}", f"{image}:latest"], check=False)
    return took


def one_round(binary, k):
    version = f"b{secrets.token_hex(3)}"
    out = {}
    cache = tempfile.mkdtemp(prefix="bench-push-cache-")
    try:
        order = ["tool", "cli"] if k % 2 == 0 else ["cli", "tool"]
        for which in order:
            reg = Registry()
            try:
                if which == "tool":
                    took, phase = tool_apply(binary, reg, version, cache, True)
                    out["tool_apply"] = took
                    out["tool_publish_cold"] = phase
                else:
                    out["cli"] = cli_script(reg, version + "c")
            finally:
                reg.close()
        reg = Registry()
        try:
            out["engine_push"] = engine_push(reg, f"myvim:{version}")
        finally:
            reg.close()
        reg = Registry()
        try:
            took, phase = tool_apply(binary, reg, version, cache, False)
            out["tool_publish_warm"] = phase
            out["tool_reapply"] = took
        finally:
            reg.close()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        run([DOCKER, "rmi", f"myvim:{version}"], check=False)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "pipeline"))
    args = ap.parse_args()
    rounds = []
    for k in range(args.rounds):
        log(f"round {k + 1}/{args.rounds}")
        r = one_round(args.binary, k)
        log("  " + ", ".join(f"{key} {v:.2f} s" for key, v in sorted(r.items())))
        rounds.append(r)
    med = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    ratios = {
        "tool publish (image in the store) / engine push": med["tool_publish_warm"] / med["engine_push"],
        "tool publish (cold store: export + compress + push) / engine push":
            med["tool_publish_cold"] / med["engine_push"],
        "tool apply / docker CLI script": med["tool_apply"] / med["cli"],
    }
    lines = [
        "# Push benchmark: the tool's pusher vs the engine's push",
        "",
        f"Run {datetime.date.today().isoformat()} with `python3 bench/push.py --rounds {args.rounds}`"
        f" on {os.cpu_count()} cores; Debian+vim example cold, each measurement against an empty"
        " registry of its own; medians of the rounds (seconds).",
        "",
        "| measurement | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | median |",
        "|---|" + "---|" * (len(rounds) + 1),
    ]
    for key in sorted(med):
        cells = " | ".join(f"{r[key]:.2f}" for r in rounds)
        lines.append(f"| {key} | {cells} | {med[key]:.2f} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in ratios.items()]
    lines += [
        "",
        "- `tool_publish_cold`: apply's publish phase with an empty blob store at the start of",
        "  the apply: the committed image is read from the engine's export; the base's layers,",
        "  compressed into the store while the steps ran, are only hashed; the steps' layer is",
        "  compressed (gzip level 3, 1 MiB members on all cores), then everything is pushed.",
        "- `tool_publish_warm`: the same image pushed again to an empty registry from the store.",
        "- `engine_push`: `docker push` of both tags of the same image (the engine compresses",
        "  with Go's gzip on one core).",
    ]
    (REPO / "bench" / "PUSH.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
