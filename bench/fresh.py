"""Workload (f): a fresh CI runner with and without the registry-backed step cache.

Every timed run starts on a brand-new `dockerd` (empty data root, its own socket and bridge) and
a brand-new user cache folder, as a CI job on an ephemeral runner does. The pipeline is the
debian-vim example made network-free: the base is `debian:bookworm` pulled from the local
registry, vim and its dependencies are installed from `.deb` files downloaded once before the
run (so every run does the same work without Debian's mirror), then the vimrc is copied in.

Scenarios, in this order in every round (each round has its own nonce, so its own keys):
- cold: pipeline, no remote cache;
- cli: the docker CLI script doing the same (the reference; on a fresh runner every run is cold);
- cold+cache: pipeline with a `[cache] remote` (readwrite, entries signed with a key pair made
  for the run), the round's empty cache repository:
  its extra time over `cold` is the export overhead;
- unchanged: the same file again on another brand-new engine, cache from `cold+cache`;
- edited: the vimrc changed, on another brand-new engine, cache from `cold+cache`.

The engine's own event stream counts container creates and image pulls of each run.
"""

import json
import os
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

SCENARIOS = ["cold", "cli", "cold+cache", "unchanged", "edited"]
SIGNING_ENV = "BENCH_CACHE_SIGNING_KEY"
TITLE = ("fresh CI runner: debian:bookworm from the registry + vim from .deb files + vimrc copy, "
         "2 tags pushed; every run on a brand-new engine")


def _run(cmd, check=True, **kw):
    r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr}")
    return r


class FreshEngine:
    """A `dockerd` with an empty data root on a bridge of its own (never `--bridge none`: that
    deletes the main engine's docker0). Stopping it removes everything it had."""

    def __init__(self, docker, n):
        self.docker = docker
        self.dir = Path(tempfile.mkdtemp(prefix="pl-bench-dockerd-", dir="/tmp"))
        self.bridge = f"plb{os.getpid() % 100000}x{n}"[:15]
        _run(["ip", "link", "del", self.bridge], check=False)
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        used = _run(["ip", "-o", "-4", "addr", "show"]).stdout
        subnet = next(x for x in range(2, 253) if f"10.214.{x}." not in used)
        _run(["ip", "addr", "add", f"10.214.{subnet}.1/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        (self.dir / "daemon.json").write_text("{}")
        self.sock = self.dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.log = open(self.dir / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", str(self.dir / "daemon.json"),
             "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "docker.pid"), "--bridge", self.bridge,
             "--iptables=false", "--ip-masq=false", "--storage-driver", "overlay2",
             "-H", self.host],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while self.cli(["version", "--format", "{{.Server.Version}}"], check=False).returncode != 0:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"fresh dockerd did not start; see {self.dir}/dockerd.log")
            time.sleep(0.2)

    def cli(self, args, check=True):
        return _run([self.docker, "-H", self.host] + args, check=check)

    def counts(self, since, until):
        """(container creates, image pulls) between two unix times."""
        out = self.cli(["events", "--since", since, "--until", until, "--format", "{{json .}}"],
                       check=False).stdout
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        creates = sum(1 for e in events if e.get("Type") == "container" and e.get("Action") == "create")
        pulls = sum(1 for e in events if e.get("Type") == "image" and e.get("Action") == "pull")
        return creates, pulls

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        root = str(self.dir)
        # This daemon's own containerd and shims carry its folder in their arguments.
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.split("\0")[0].find("containerd") >= 0 and root in cmdline:
                _run(["kill", "-KILL", entry.name], check=False)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(root)]
        for m in sorted(mounts, key=len, reverse=True):
            _run(["umount", "-l", m], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def q(s):
    return json.dumps(s)


class FreshRunner:
    def __init__(self, bench, registry, docker):
        self.b, self.registry, self.docker = bench, registry, docker
        self.dir = bench.tmp / "f"
        self.base = f"{registry}/bench/{bench.runid}/base:bookworm"
        self.n = 0

    def prepare(self):
        """Pushes the base to the registry and downloads vim's .deb files (untimed, once)."""
        _run([self.docker, "tag", "debian:bookworm", self.base])
        _run([self.docker, "push", self.base])
        debs = self.dir / "pipeline" / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        _run([self.docker, "run", "--rm", "-v", f"{debs}:/out", "debian:bookworm", "sh", "-c",
              "apt-get update -qq && apt-get install -y -qq --download-only vim >/dev/null "
              "&& cp /var/cache/apt/archives/*.deb /out/"], timeout=600)
        self.deb_bytes = sum(p.stat().st_size for p in debs.iterdir())
        self.deb_count = len(list(debs.iterdir()))
        shutil.copytree(debs, self.dir / "cli" / "debs", dirs_exist_ok=True)
        # The remote cache trusts only entries signed by the key in the file: a key pair for
        # the run (the private key in the variable the file names, as a trusted CI job has it).
        keys = _run([str(self.b.bin), "keygen"])
        self.signing_key = keys.stdout.strip()
        self.verify_key = re.search(r'verify_key = "([^"]+)"', keys.stderr).group(1)

    def vimrc(self, edit):
        return "set number\nsyntax on\n" + (f'" edited {edit}\n' if edit else "")

    def pipeline_toml(self, nonce, repo, cache_repo):
        cache = ["[cache]", f"remote = {q(cache_repo)}", f"verify_key = {q(self.verify_key)}",
                 f"signing_key_env = {q(SIGNING_ENV)}", ""] if cache_repo else []
        return "\n".join([
            f"name = {q(f'bench-{self.b.runid}-f')}", "",
            "[base]", f"image = {q(self.base)}", "",
            "[[step]]", f"run = {q(f'echo {nonce} > /bench-nonce')}", "",
            "[[step]]", 'copy = { src = "debs", dest = "/tmp/debs" }', "",
            "[[step]]", 'run = "dpkg -i /tmp/debs/*.deb >/dev/null && rm -rf /tmp/debs"', "",
            "[[step]]", 'copy = { src = "vimrc", dest = "/etc/vim/vimrc.local", mode = "0644" }', "",
            "[commit]", 'author = "zzyy <zzyy@example.com>"',
            f"message = {q(f'debian with vim ({self.b.runid})')}", "",
            "[commit.config]", 'cmd = ["vim"]', 'env = { EDITOR = "vim" }', "",
            "[[publish]]", f"repository = {q(repo)}", 'tags = ["1.1", "latest"]', ""] + cache)

    def cli_script(self, nonce, repo, engine, container):
        d = shlex.quote(self.docker)
        h = shlex.quote(engine.host)
        return "\n".join([
            "#!/bin/bash", "set -euo pipefail", f"D='{d} -H {h}'", f"C={shlex.quote(container)}",
            'trap \'[ "$?" = 0 ] || $D rm -f "$C" >/dev/null 2>&1\' EXIT',
            f'$D run -d --init --name "$C" {shlex.quote(self.base)} sleep infinity >/dev/null',
            f"$D exec \"$C\" /bin/sh -c {shlex.quote(f'echo {nonce} > /bench-nonce')}",
            '$D cp debs "$C":/tmp/debs',
            "$D exec \"$C\" /bin/sh -c 'dpkg -i /tmp/debs/*.deb >/dev/null && rm -rf /tmp/debs'",
            '$D cp vimrc "$C":/etc/vim/vimrc.local',
            '$D exec "$C" chmod 0644 /etc/vim/vimrc.local',
            "$D commit -a 'zzyy <zzyy@example.com>' -m 'debian with vim' -c 'CMD [\"vim\"]' "
            f"-c 'ENV EDITOR=vim' \"$C\" {shlex.quote(repo)}:1.1 >/dev/null",
            f"$D tag {shlex.quote(repo)}:1.1 {shlex.quote(repo)}:latest",
            f"$D push {shlex.quote(repo)}:1.1", f"$D push {shlex.quote(repo)}:latest",
            '$D rm -f "$C" >/dev/null', ""])

    def run_one(self, scenario, rnd, nonce, edit, cache_repo):
        self.n += 1
        engine = FreshEngine(self.docker, self.n)
        try:
            tool = "cli" if scenario == "cli" else "pipeline"
            d = self.dir / tool
            d.mkdir(parents=True, exist_ok=True)
            (d / "vimrc").write_text(self.vimrc(edit))
            reg = f"{self.registry}/bench/{self.b.runid}"
            if tool == "cli":
                repo = f"{reg}/f-cli-r{rnd}"
                f = d / "build.sh"
                f.write_text(self.cli_script(nonce, repo, engine, f"bench-{self.b.runid}-f-{rnd}"))
                cmd, env = ["bash", str(f)], None
            else:
                # Both cached scenarios publish where cold+cache did: their tags must be up to date.
                repo = f"{reg}/f-{'nc' if scenario == 'cold' else 'c'}-r{rnd}"
                f = d / "pipeline.toml"
                f.write_text(self.pipeline_toml(nonce, repo, cache_repo))
                cmd = [str(self.b.bin), "apply", "--engine", engine.host, str(f)]
                user_cache = tempfile.mkdtemp(prefix="pl-bench-xdg-", dir=str(self.b.tmp))
                env = dict(self.b.pipeline_env, XDG_CACHE_HOME=user_cache)
                env[SIGNING_ENV] = self.signing_key
                env.pop("DOCKER_HOST", None)
            logf = self.b.tmp / "logs" / f"f-{scenario}-r{rnd}.log"
            logf.parent.mkdir(exist_ok=True)
            since = f"{time.time():.3f}"
            t0 = time.perf_counter()
            with open(logf, "w") as out:
                rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=str(d)).returncode
            wall = time.perf_counter() - t0
            time.sleep(0.2)  # the event stream is flushed
            creates, pulls = engine.counts(since, f"{time.time():.3f}")
        finally:
            engine.stop()
        text = logf.read_text(errors="replace")
        ran = len(re.findall(r"Z step \[\d+/\d+\]", text)) if tool == "pipeline" else None
        cached = len(re.findall(r"Z cached \[\d+/\d+\]", text)) if tool == "pipeline" else None
        up_to_date = len(re.findall(r"up-to-date|up to date", text)) if tool == "pipeline" else None
        # The export's own time, as the tool reports it: `cache pushed N entries to REPO (X.Ys)`.
        export = re.search(r"cache pushed \d+ entr(?:y|ies) to \S+ \(([\d.]+)s\)", text)
        export_s = float(export.group(1)) if export else None
        row = dict(workload="f", scenario=scenario, tool=tool, round=rnd, wall=wall, ok=rc == 0,
                   creates=creates, pulls=pulls, ran=ran, cached=cached, up_to_date=up_to_date,
                   export_s=export_s,
                   log=str(logf), rss_kib=None, cpu_s=None)
        print(f"[{time.strftime('%H:%M:%S')}]   f {scenario:10} r{rnd}: {wall:7.3f}s "
              f"{'ok' if rc == 0 else 'FAILED'} creates {creates} pulls {pulls}"
              + (f" ran {ran} cached {cached}" if ran is not None else ""), flush=True)
        if rc != 0:
            self.b.failures.append(("f", scenario, tool, rnd, rc, "\n".join(text.splitlines()[-15:])))
        self.b.results.append(row)
        return row

    def run(self, rounds):
        print(f"[{time.strftime('%H:%M:%S')}] workload f: {TITLE}", flush=True)
        try:
            self.prepare()
            self.rounds(rounds)
        finally:
            _run([self.docker, "rmi", self.base], check=False)

    def rounds(self, rounds):
        # Untimed warm-up: the page cache holds the base's and the .deb files' bytes.
        self.run_one("cold", 0, f"warmup-{secrets.token_hex(8)}", None, None)
        self.b.results.pop()
        for rnd in range(1, rounds + 1):
            nonce = f"{self.b.runid}-f-{rnd}-{secrets.token_hex(8)}"
            cache = f"{self.registry}/bench/{self.b.runid}/f-cache-r{rnd}"
            self.run_one("cold", rnd, nonce, None, None)
            self.run_one("cli", rnd, nonce, None, None)
            self.run_one("cold+cache", rnd, nonce, None, cache)
            self.run_one("unchanged", rnd, nonce, None, cache)
            self.run_one("edited", rnd, nonce, f"{rnd}-{secrets.token_hex(4)}", cache)


def section(b, runner, argv, markers):
    """The RESULTS.md section of workload (f), between its markers."""
    begin, end = markers
    L = [begin, f"## (f) {TITLE}\n"]
    A = L.append
    la, lb = b.loadavg_start, os.getloadavg()
    A(f"Generated by `{argv}` on {time.strftime('%Y-%m-%d %H:%M:%S')} (run id `{b.runid}`, pipeline "
      f"`{b.version}`, git {b.git}). Load average at start {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, at end "
      f"{lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}.\n")
    A(f"vim and its dependencies: {runner.deb_count} .deb files, {runner.deb_bytes / 1e6:.1f} MB, "
      "copied in and installed with `dpkg -i`. Every run: a new `dockerd` with an empty data root "
      "(started before the clock starts, stopped after it stops) and an empty user cache folder. "
      "Ratios compare with pipeline's `cold` median. Creates and pulls are counted from the fresh "
      "engine's event stream.\n")
    A("| scenario | tool | n | median | min | max | / pipeline cold | container creates | image pulls | steps ran / cached |")
    A("|---|---|---|---|---|---|---|---|---|---|")
    rows_of = lambda sc: [r for r in b.results if r["workload"] == "f" and r["scenario"] == sc]
    med = {}
    for sc in SCENARIOS:
        ok = [r["wall"] for r in rows_of(sc) if r["ok"]]
        med[sc] = statistics.median(ok) if ok else None
    fmt = lambda x: f"{x:.3f}s" if x is not None else "–"
    join = lambda xs: "/".join(str(x) for x in sorted(set(xs)))
    for sc in SCENARIOS:
        rows = rows_of(sc)
        if not rows:
            continue
        ok = [r for r in rows if r["ok"]]
        walls = [r["wall"] for r in ok]
        tool = rows[0]["tool"]
        md = med[sc]
        ratio = f"{md / med['cold']:.3f}" if md and med.get("cold") else "–"
        steps = (join(r["ran"] for r in ok) + " / " + join(r["cached"] for r in ok)) if tool == "pipeline" else ""
        n = f"{len(ok)}" + (f" ({len(rows) - len(ok)} failed)" if len(ok) < len(rows) else "")
        A(f"| {sc} | {tool} | {n} | {fmt(md)} | {fmt(min(walls) if walls else None)} | "
          f"{fmt(max(walls) if walls else None)} | {ratio} | {join(r['creates'] for r in ok)} | "
          f"{join(r['pulls'] for r in ok)} | {steps} |")
    A("")
    cold, cc, un, ed, cli = (med.get(k) for k in ("cold", "cold+cache", "unchanged", "edited", "cli"))
    notes = []
    if cold and ed:
        notes.append(f"A last-step edit on an empty engine takes {ed:.3f}s = {ed / cold:.2f}x the cold "
                     "time: it pulls the checkpoint to resume from (the base and vim layers) and runs only "
                     "the copy.")
    if cli and cold:
        notes.append(f"The CLI script on a fresh runner takes {cli:.3f}s; it has no cache, so every CI run "
                     "of it is cold" + (f" (pipeline unchanged / CLI = {un / cli:.3f})." if un else "."))
    for line in notes:
        A(f"- {line}")
    A("")
    A("| goal | measured | met |")
    A("|---|---|---|")
    if cold and un:
        A(f"| (f) unchanged on an empty engine / cold ≤ 0.1 | {un / cold:.3f} | {'yes' if un / cold <= 0.1 else '**no**'} |")
    if cold and cc:
        over = (cc - cold) / cold
        A(f"| (f) remote-cache export overhead: cold+cache / cold − 1 ≤ 0.10 | {over:+.3f} | "
          f"{'yes' if over <= 0.10 else '**no**'} |")
    exports = [r["export_s"] for r in rows_of("cold+cache") if r["ok"] and r.get("export_s") is not None]
    if cold and exports:
        ex = statistics.median(exports)
        A(f"| (f) export time the tool reports (median {ex:.1f}s) / cold ≤ 0.10 | {ex / cold:.3f} | "
          f"{'yes' if ex / cold <= 0.10 else '**no**'} |")
    A("")
    for wk, sc, tool, rnd, rc, tail in [f for f in b.failures if f[0] == "f"]:
        A(f"- failed: (f) {sc} {tool} round {rnd}: exit {rc}\n\n```\n{tail}\n```\n")
    A(end)
    return "\n".join(L) + "\n"
