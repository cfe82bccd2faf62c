#!/usr/bin/env python3
"""Benchmark: `pipeline apply` vs a docker CLI script vs Packer 1.6.6 (docker builder).

One command:  python3 bench/run.py            (full: workloads a, b, c; 5 rounds)
              python3 bench/run.py --quick    (workload a only, 5 rounds)

See bench/README.md. Writes bench/RESULTS.md (rewritten on every run). Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fresh  # noqa: E402  (workload f: a fresh CI runner, bench/fresh.py)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
DOCKER = "/usr/bin/docker"
REGISTRY = "127.0.0.1:5000"
TOOLS = ["pipeline", "cli", "packer"]
SCENARIOS = ["cold", "warm", "edited"]
# Which tools run in which scenario (warm is pipeline only: the others have no cache).
SCENARIO_TOOLS = {"cold": TOOLS, "warm": ["pipeline"], "edited": TOOLS}
MIB = 1024 * 1024


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd, check=True, capture=True, env=None, timeout=None):
    r = subprocess.run(cmd, check=False, text=True, env=env, timeout=timeout,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr}")
    return r


# ---------------------------------------------------------------------------------------------
# Workloads: one neutral description, rendered three ways.
# A step is ("run", shell command, env dict, workdir or None) or ("copy", file name, dest, mode).


class Workload:
    def __init__(self, key, title, base, author, message, changes, config_toml, tags):
        self.key, self.title, self.base = key, title, base
        self.author, self.message = author, message
        self.changes = changes          # Dockerfile instructions for docker commit -c / Packer
        self.config_toml = config_toml  # the same as a [commit.config] table
        self.tags = tags                # tags pushed to the registry

    def steps(self, nonce, edit):
        raise NotImplementedError

    def steps_for(self, tool, nonce, edit):
        """The steps as `tool` runs them (the same for every tool unless a workload says)."""
        return self.steps(nonce, edit)

    def files(self, edit):
        """Files the copy steps read: {name: (bytes, mode)}."""
        return {}


HTTPD_CMD = ["httpd", "-f", "-p", "8080", "-h", "/srv/www"]


def busybox_changes(runid):
    return [
        "CMD " + json.dumps(HTTPD_CMD),
        "ENV APP_MODE=bench",
        f"LABEL org.example.bench={runid}",
        "WORKDIR /srv/www",
        "EXPOSE 8080",
    ]


def busybox_config_toml(runid):
    return (f"cmd = {json.dumps(HTTPD_CMD)}\n"
            'env = { APP_MODE = "bench" }\n'
            f'labels = {{ "org.example.bench" = "{runid}" }}\n'
            'workdir = "/srv/www"\n'
            "expose = [8080]\n")


class SmallBusybox(Workload):
    """(a) busybox base, 3 shell steps, a 200 kB file copy, commit with config, 2 tags pushed."""

    def __init__(self, runid, blob):
        super().__init__("a", "busybox: 3 shell steps + 200 kB copy, commit with config, 2 tags pushed",
                         "busybox:latest", "Bench <bench@example.com>",
                         f"bench small busybox ({runid})", busybox_changes(runid),
                         busybox_config_toml(runid), ["latest", "v1"])
        self.blob = blob

    def steps(self, nonce, edit):
        last = "ls -l /srv/www && cat /srv/www/index.html"
        if edit:
            last += f" && echo edited {edit}"
        return [
            ("run", f"echo {nonce} > /bench-nonce && mkdir -p /srv/www /etc/app", {}, None),
            ("run", "echo 'hello from bench' > index.html && chmod 0644 index.html", {}, "/srv/www"),
            ("copy", "blob.bin", "/srv/www/blob.bin", None),
            ("run", last, {}, None),
        ]

    def files(self, edit):
        return {"blob.bin": (self.blob, 0o644)}


class DebianVim(Workload):
    """(b) the debian-vim example: apt-get install vim, a vimrc copied in, 2 tags pushed."""

    def __init__(self, runid, vimrc):
        super().__init__("b", "debian:bookworm + apt-get install vim + vimrc copy (the debian-vim example)",
                         "debian:bookworm", "zzyy <zzyy@example.com>",
                         f"debian with vim 1.1 ({runid})",
                         ['CMD ["vim"]', "ENV EDITOR=vim",
                          "LABEL org.opencontainers.image.version=1.1"],
                         'cmd = ["vim"]\nenv = { EDITOR = "vim" }\n'
                         'labels = { "org.opencontainers.image.version" = "1.1" }\n',
                         ["1.1", "latest"])
        self.vimrc = vimrc

    def steps(self, nonce, edit):
        return [
            ("run", f"echo {nonce} > /etc/bench-nonce && apt-get update && apt-get install -y "
                    "--no-install-recommends vim && rm -rf /var/lib/apt/lists/*",
             {"DEBIAN_FRONTEND": "noninteractive"}, None),
            ("copy", "vimrc", "/root/.vimrc", "0644"),
        ]

    def files(self, edit):
        text = self.vimrc + (f'" edited {edit}\n' if edit else "")
        return {"vimrc": (text.encode(), 0o644)}


APT_CACHES = ["/var/cache/apt", "/var/lib/apt/lists"]
# The apt recipe for cache mounts (README): keep what apt downloads.
APT_KEEP = ("rm -f /etc/apt/apt.conf.d/docker-clean && echo 'Binary::apt::APT::Keep-Downloaded-Packages "
            "\"true\";' > /etc/apt/apt.conf.d/keep-cache")


class DebianVimCached(DebianVim):
    """(d) the debian-vim example with apt's folders as cache mounts; the apt step's command
    changes every round. pipeline mounts warm caches; the CLI script and Packer, which have no
    cache mounts, download everything again and drop the lists as a Dockerfile would."""

    def __init__(self, runid, vimrc):
        super().__init__(runid, vimrc)
        self.key = "d"
        self.title = ("debian:bookworm + apt-get install vim with cache mounts, the apt step's command "
                      "changed (rebuild with warm caches) + vimrc copy")
        self.message = f"debian with vim 1.1, cache mounts ({runid})"
        self.cache = {0: APT_CACHES}

    def steps_for(self, tool, nonce, edit):
        install = "apt-get update && apt-get install -y --no-install-recommends vim"
        if tool == "pipeline":
            cmd = f"echo {nonce} > /etc/bench-nonce && {APT_KEEP} && {install}"
        else:
            cmd = f"echo {nonce} > /etc/bench-nonce && {install} && rm -rf /var/lib/apt/lists/*"
        return [("run", cmd, {"DEBIAN_FRONTEND": "noninteractive"}, None),
                ("copy", "vimrc", "/root/.vimrc", "0644")]

    def steps(self, nonce, edit):
        return self.steps_for("pipeline", nonce, edit)


class TwentySteps(Workload):
    """(c) 20 small shell steps on busybox, commit with config, 2 tags pushed."""

    def __init__(self, runid):
        super().__init__("c", "busybox: 20 small shell steps, commit with config, 2 tags pushed",
                         "busybox:latest", "Bench <bench@example.com>",
                         f"bench twenty steps ({runid})", busybox_changes(runid),
                         busybox_config_toml(runid), ["latest", "v1"])

    def steps(self, nonce, edit):
        out = [("run", f"echo {nonce} > /bench-nonce && echo 1 >> /steps.log", {}, None)]
        for i in range(2, 21):
            cmd = f"echo {i} >> /steps.log"
            if i == 20 and edit:
                cmd += f" && echo edited {edit} >> /steps.log"
            out.append(("run", cmd, {}, None))
        return out


class BigCopy(Workload):
    """One-shot RSS check: busybox, one step, a 100 MB random file copied in, 1 tag pushed."""

    def __init__(self, runid):
        super().__init__("big", "busybox + 100 MB random file copy (RSS check)", "busybox:latest",
                         "Bench <bench@example.com>", f"bench big copy ({runid})",
                         busybox_changes(runid), busybox_config_toml(runid), ["latest"])

    def steps(self, nonce, edit):
        return [("run", f"echo {nonce} > /bench-nonce && mkdir -p /data", {}, None),
                ("copy", "big.bin", "/data/big.bin", None)]

    def files(self, edit):
        return {}  # written once, streamed from disk (not held in memory here)


def q(s):
    """A TOML basic string (JSON escapes are valid TOML for ASCII text)."""
    return json.dumps(s)


def render_pipeline(w, steps, name, repo, local_tag):
    out = [f"name = {q(name)}", "", "[base]", f"image = {q(w.base)}", 'pull = "never"', ""]
    for i, (kind, a, b, c) in enumerate(steps):
        out.append("[[step]]")
        if kind == "run":
            out.append(f"run = {q(a)}")
            if getattr(w, "cache", {}).get(i):
                out.append("cache = [" + ", ".join(q(p) for p in w.cache[i]) + "]")
            if b:
                out.append("env = { " + ", ".join(f"{k} = {q(v)}" for k, v in b.items()) + " }")
            if c:
                out.append(f"workdir = {q(c)}")
        else:
            mode = f", mode = {q(c)}" if c else ""
            out.append(f"copy = {{ src = {q(a)}, dest = {q(b)}{mode} }}")
        out.append("")
    out += ["[commit]", f"author = {q(w.author)}", f"message = {q(w.message)}",
            f"tags = [{q(local_tag)}]", "", "[commit.config]", w.config_toml,
            "[[publish]]", f"repository = {q(repo)}",
            "tags = [" + ", ".join(q(t) for t in w.tags) + "]", ""]
    return "\n".join(out)


def render_cli(w, steps, container, repo, local_tag, workdir):
    L = ["#!/bin/bash", "set -euo pipefail", f"D={DOCKER}", f"cd {shlex.quote(str(workdir))}",
         f"C={shlex.quote(container)}",
         # On failure the container still goes; on success rm -f is the script's last command.
         'trap \'[ "$?" = 0 ] || $D rm -f "$C" >/dev/null 2>&1\' EXIT',
         f'$D run -d --init --name "$C" {w.base} sleep infinity >/dev/null']
    for kind, a, b, c in steps:
        if kind == "run":
            opts = "".join(f" -e {shlex.quote(f'{k}={v}')}" for k, v in b.items())
            if c:
                opts += f" -w {shlex.quote(c)}"
            L.append(f'$D exec{opts} "$C" /bin/sh -c {shlex.quote(a)}')
        else:
            L.append(f'$D cp {shlex.quote(a)} "$C":{shlex.quote(b)}')
    changes = "".join(f" -c {shlex.quote(ch)}" for ch in w.changes)
    L.append(f'$D commit -a {shlex.quote(w.author)} -m {shlex.quote(w.message)}{changes} "$C" '
             f"{shlex.quote(local_tag)} >/dev/null")
    for t in w.tags:
        L.append(f"$D tag {shlex.quote(local_tag)} {shlex.quote(f'{repo}:{t}')}")
    for t in w.tags:  # one tag after the other: never two pushes to one registry at once
        L.append(f"$D push {shlex.quote(f'{repo}:{t}')}")
    L.append('$D rm -f "$C" >/dev/null')
    return "\n".join(L) + "\n"


def render_packer(w, steps, repo, workdir):
    provisioners = []
    for kind, a, b, c in steps:
        if kind == "run":
            cmd = f"cd {shlex.quote(c)} && {a}" if c else a
            p = {"type": "shell", "inline": [cmd]}
            if b:
                p["environment_vars"] = [f"{k}={v}" for k, v in b.items()]
            provisioners.append(p)
        else:
            provisioners.append({"type": "file", "source": str(workdir / a), "destination": b})
    return json.dumps({
        "builders": [{"type": "docker", "image": w.base, "pull": False, "commit": True,
                      "author": w.author, "message": w.message, "changes": w.changes}],
        "provisioners": provisioners,
        "post-processors": [[
            {"type": "docker-tag", "repository": repo, "tags": w.tags},
            {"type": "docker-push", "login": False},
        ]],
    }, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.runid = datetime.datetime.now().strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pipeline-bench-{self.runid}-"))
        self.results = []   # dicts: workload, scenario, tool, round, wall, ok, rss_kib, cpu_s
        self.failures = []
        self.seq = 0
        self.started = time.time()
        self.loadavg_start = os.getloadavg()

    # --- setup --------------------------------------------------------------------------------
    def build(self):
        if not self.args.no_build:
            log("cargo build --release")
            sh(["cargo", "build", "--release", "--quiet"], capture=False)
        src = REPO / "target" / "release" / "pipeline"
        # A snapshot: others may rebuild target/ while the bench runs.
        self.bin = self.tmp / "pipeline"
        shutil.copy2(src, self.bin)
        self.version = sh([str(self.bin), "--version"]).stdout.strip()
        head = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
        dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml",
                    "Cargo.lock"], check=False).stdout.strip().splitlines()
        self.git = head + (f" + {len(dirty)} uncommitted file(s) in src/Cargo.*" if dirty else "")

    def preflight(self):
        for img in ("busybox:latest", "debian:bookworm"):
            if sh([DOCKER, "image", "inspect", img], check=False).returncode != 0:
                sys.exit(f"base image {img} missing: run scripts/setup.sh")
        if sh(["curl", "-sf", f"http://{REGISTRY}/v2/"], check=False).returncode != 0:
            sys.exit(f"no registry on {REGISTRY}: run scripts/setup.sh")
        if not shutil.which("packer"):
            sys.exit("packer missing: apt-get install packer")
        if not Path("/usr/bin/time").exists():
            sys.exit("/usr/bin/time missing: apt-get install time")
        self.packer_env = dict(os.environ, PATH="/usr/bin:" + os.environ.get("PATH", ""),
                               HOME=str(self.tmp / "packer-home"),
                               PACKER_CACHE_DIR=str(self.tmp / "packer-cache"),
                               CHECKPOINT_DISABLE="1", PACKER_NO_COLOR="1")
        (self.tmp / "packer-home").mkdir()
        self.pipeline_env = dict(os.environ, PIPELINE_PROGRESS="plain")

    # --- one run ------------------------------------------------------------------------------
    def prepare(self, w, tool, nonce, edit):
        """Writes the files for one run into the (workload, tool) folder; returns the command."""
        d = self.tmp / w.key / tool
        d.mkdir(parents=True, exist_ok=True)
        for name, (data, mode) in w.files(edit).items():
            p = d / name
            if not p.exists() or p.read_bytes() != data:
                p.write_bytes(data)
            os.chmod(p, mode)
        steps = w.steps_for(tool, nonce, edit)
        repo = f"{REGISTRY}/bench/{self.runid}/{w.key}-{tool}"
        local = f"bench-{self.runid}/{w.key}-{tool}:latest"
        if tool == "pipeline":
            f = d / "pipeline.toml"
            f.write_text(render_pipeline(w, steps, f"bench-{self.runid}-{w.key}", repo, local))
            return [str(self.bin), "apply", str(f)], self.pipeline_env, f
        if tool == "cli":
            self.seq += 1
            f = d / "build.sh"
            f.write_text(render_cli(w, steps, f"bench-{self.runid}-{w.key}-{self.seq}", repo, local, d))
            return ["bash", str(f)], None, f
        f = d / "template.json"
        f.write_text(render_packer(w, steps, repo, d))
        return ["packer", "build", "-color=false", str(f)], self.packer_env, f

    def run_one(self, w, tool, scenario, rnd, nonce, edit, record=True):
        cmd, env, f = self.prepare(w, tool, nonce, edit)
        logf = self.tmp / "logs" / f"{w.key}-{tool}-{scenario}-r{rnd}.log"
        logf.parent.mkdir(exist_ok=True)
        rssf = self.tmp / "rss.txt"
        if tool == "pipeline":
            cmd = ["/usr/bin/time", "-f", "%M %U %S", "-o", str(rssf)] + cmd
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with open(logf, "w") as out:
            rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=str(f.parent)).returncode
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss = cpu = None
        if tool == "pipeline":
            # Peak RSS from /usr/bin/time -f %M; CPU from the rusage of the waited-for children
            # (microseconds, where time's %U/%S have a 10 ms resolution; time's own CPU is ~1 ms).
            rss = int(rssf.read_text().strip().splitlines()[-1].split()[0])
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        ran = cached = None
        if tool == "pipeline":
            text = logf.read_text(errors="replace")
            ran = len(re.findall(r"Z step \[\d+/\d+\]", text))
            cached = len(re.findall(r"Z cached \[\d+/\d+\]", text))
        row = dict(workload=w.key, scenario=scenario, tool=tool, round=rnd, wall=wall,
                   ok=rc == 0, rss_kib=rss, cpu_s=cpu, log=str(logf), ran=ran, cached=cached)
        if getattr(w, "cache", None):
            # What apt downloaded: its `Get:` lines and the seconds of its `Fetched ... in Ns`.
            text = logf.read_text(errors="replace")
            row["apt_gets"] = len(re.findall(r"\bGet:\d+ ", text))
            row["apt_fetch_s"] = sum(int(n) for n in re.findall(r"Fetched [^\n]* in (\d+)s", text))
        extra = f" rss {rss / 1024:.1f} MiB cpu {cpu:.3f}s" if rss else ""
        log(f"  {w.key} {scenario:6} {tool:8} r{rnd}: {wall:7.3f}s {'ok' if rc == 0 else 'FAILED'}{extra}")
        if rc != 0:
            tail = logf.read_text(errors="replace").splitlines()[-15:]
            self.failures.append((w.key, scenario, tool, rnd, rc, "\n".join(tail)))
        if record:
            self.results.append(row)
        return row

    # --- the interleaved rounds ---------------------------------------------------------------
    def workload(self, w, rounds, scenarios=SCENARIOS, scenario_tools=SCENARIO_TOOLS):
        """The interleaved rounds of one workload. (d) passes its one scenario, `rebuild`: its
        warm-up round fills pipeline's cache mounts, then every round changes the apt step's
        command (the nonce) and each tool rebuilds."""
        log(f"workload {w.key}: {w.title}")
        # An untimed warm-up round: each tool's repository then already holds the base layers,
        # as every later round's does, and the engine's and the page cache's state is the same.
        nonce = f"warmup-{secrets.token_hex(8)}"
        for tool in TOOLS:
            self.run_one(w, tool, "warmup", 0, nonce, None, record=False)
        for rnd in range(1, rounds + 1):
            nonce = f"{self.runid}-{w.key}-{rnd}-{secrets.token_hex(8)}"
            edit = f"{rnd}-{secrets.token_hex(4)}"
            for scenario in scenarios:
                for tool in scenario_tools[scenario]:
                    self.run_one(w, tool, scenario, rnd, nonce, edit if scenario == "edited" else None)

    # --- one-shot checks ----------------------------------------------------------------------
    def big_copy(self):
        w = BigCopy(self.runid)
        d = self.tmp / w.key / "pipeline"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "big.bin", "wb") as f:
            for _ in range(100):
                f.write(os.urandom(MIB))
        log("one-shot: 100 MB copy (pipeline, cold then warm)")
        nonce = secrets.token_hex(8)
        self.big = [self.run_one(w, "pipeline", "cold", 1, nonce, None, record=False),
                    self.run_one(w, "pipeline", "warm", 1, nonce, None, record=False)]
        self.big_profile = self.profile(w, "big") if not self.args.no_profile else None

    def profile(self, w, label):
        """A cold apply under strace: each engine API request, its latency, and the time with no
        request outstanding (the tool's own work)."""
        if not shutil.which("strace"):
            return None
        cmd, env, f = self.prepare(w, "pipeline", f"profile-{secrets.token_hex(8)}", None)
        trace = self.tmp / f"strace-{label}.txt"
        t0 = time.perf_counter()
        rc = subprocess.run(["strace", "-f", "-ttt", "-s", "200", "-o", str(trace),
                             "-e", "trace=read,recvfrom,recvmsg,write,writev,sendto,sendmsg,openat,close"] + cmd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=str(f.parent)).returncode
        wall = time.perf_counter() - t0
        prof = parse_strace(trace)
        prof["rc"], prof["wall_outside"], prof["label"] = rc, wall, label
        log(f"  profile {label}: {prof['total']:.3f}s traced, engine {prof['engine']:.3f}s, "
            f"ours {prof['ours']:.3f}s (rc {rc})")
        return prof

    # --- cleanup ------------------------------------------------------------------------------
    def cleanup(self):
        log("cleanup: containers and images of this run")
        names = sh([DOCKER, "ps", "-a", "-q", "--filter", f"name=bench-{self.runid}"],
                   check=False).stdout.split()
        if names:
            sh([DOCKER, "rm", "-f"] + names, check=False)
        ids = sh([DOCKER, "images", "-a", "-q", "--no-trunc"], check=False).stdout.split()
        ours = []
        for i in range(0, len(ids), 200):
            chunk = sorted(set(ids[i:i + 200]))
            r = sh([DOCKER, "image", "inspect", "--format",
                    "{{.Id}}\t{{json .Comment}}\t{{json .RepoTags}}"] + chunk, check=False)
            for line in r.stdout.splitlines():
                iid, comment, tags = line.split("\t")
                if self.runid in json.loads(comment) or any(self.runid in t for t in json.loads(tags) or []):
                    ours.append((iid, json.loads(tags) or []))
        # Our containers (Packer's or a failed pipeline's) hold our images: remove them first.
        for iid, _ in ours:
            cs = sh([DOCKER, "ps", "-a", "-q", "--filter", f"ancestor={iid}"], check=False).stdout.split()
            if cs:
                sh([DOCKER, "rm", "-f"] + cs, check=False)
        tags = [t for _, ts in ours for t in ts]
        for i in range(0, len(tags), 100):
            sh([DOCKER, "rmi"] + tags[i:i + 100], check=False)
        left = {iid for iid, _ in ours}
        for _ in range(10):  # children before parents
            if not left:
                break
            for iid in list(left):
                if sh([DOCKER, "rmi", iid], check=False).returncode == 0 or \
                        sh([DOCKER, "image", "inspect", iid], check=False).returncode != 0:
                    left.discard(iid)
        volumes = sh([DOCKER, "volume", "ls", "-q", "--filter",
                      "label=pipeline.cache-mount.pipeline=" + f"bench-{self.runid}-d"],
                     check=False).stdout.split()
        if volumes:
            sh([DOCKER, "volume", "rm", "-f"] + volumes, check=False)
        self.cleanup_note = (f"removed {len(ours) - len(left)} image(s) of this run"
                             + (f", {len(left)} left" if left else "")
                             + (f" and {len(volumes)} cache mount volume(s)" if volumes else ""))
        log("  " + self.cleanup_note)
        if not self.args.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# strace parsing: request lines written to a socket, response bytes read from it.

# strace cuts strings at -s bytes: a long request line (a commit with its comment) has no
# " HTTP/1.1" in the trace, so only the method and the path's start are matched.
REQ = re.compile(r'"(GET|POST|PUT|DELETE|HEAD) (/[^ "]*)')
LINE = re.compile(r"^(\d+)\s+([\d.]+)\s+(.*)$")
CALL = re.compile(r"^(read|recvfrom|recvmsg|write|writev|sendto|sendmsg)\((\d+),")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>")
OPEN_CLOSE = re.compile(r"^(close|openat|open)\((\d+|AT_FDCWD)?")
RET = re.compile(r"= (-?\d+)(?: \w+.*)?$")

CATEGORIES = [
    (r"^/_ping|^/version", "ping / version"),
    (r"^/containers/create", "container create"),
    (r"^/containers/[^/]+/start", "container start"),
    (r"^/containers/[^/]+/exec", "exec create"),
    (r"^/exec/[^/]+/start", "exec start + output"),
    (r"^/exec/[^/]+/json", "exec inspect"),
    (r"^/containers/[^/]+/archive", "upload (archive)"),
    (r"^/commit", "commit"),
    (r"/tag(\?|$)", "tag"),
    (r"/push(\?|$)", "push"),
    (r"^/images/json", "list images"),
    (r"^/images/.+/json", "inspect image"),
    (r"^/distribution/", "distribution inspect"),
    (r"^/v2/", "registry (direct)"),
]


def categorize(method, path):
    path = re.sub(r"^/v1\.\d+", "", path)
    if method == "DELETE" and path.startswith("/containers/"):
        return "container remove"
    for pat, name in CATEGORIES:
        if re.search(pat, path):
            return name
    return f"{method} {path.split('?')[0][:40]}"


def parse_strace(path):
    """Requests and reads keyed by (fd, generation): a close() or an open of a file ends an fd's
    generation, so reads of a copied file on a reused fd number never count as engine time."""
    pending = {}       # pid -> (syscall, fd) of an unfinished call
    gen = {}           # fd -> generation
    reqs = []          # [t, key, method, path]
    reads = {}         # key -> [(t, n)]
    t_first = t_last = None
    for raw in open(path, errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, t, rest = m.group(1), float(m.group(2)), m.group(3)
        t_first = t if t_first is None else t_first
        t_last = t
        o = OPEN_CLOSE.match(rest)
        if o:
            if o.group(1) == "close":
                fd = int(o.group(2))
                gen[fd] = gen.get(fd, 0) + 1
            else:
                ret = RET.search(rest)
                if ret and int(ret.group(1)) >= 0:
                    fd = int(ret.group(1))
                    gen[fd] = gen.get(fd, 0) + 1
            continue
        c = CALL.match(rest)
        if c:
            name, fd = c.group(1), int(c.group(2))
            if rest.endswith("<unfinished ...>"):
                pending[pid] = (name, (fd, gen.get(fd, 0)))
                r = REQ.search(rest)
                if r and name in ("write", "writev", "sendto", "sendmsg"):
                    reqs.append([t, (fd, gen.get(fd, 0)), r.group(1), r.group(2)])
                continue
            key = (fd, gen.get(fd, 0))
        else:
            rs = RESUMED.match(rest)
            if not rs or pid not in pending:
                continue
            name, key = pending.pop(pid)
        ret = RET.search(rest)
        n = int(ret.group(1)) if ret else -1
        if name in ("read", "recvfrom", "recvmsg"):
            if n >= 0:
                reads.setdefault(key, []).append((t, n))
        elif c:  # a finished write on one line
            r = REQ.search(rest)
            if r:
                reqs.append([t, key, r.group(1), r.group(2)])
    # Each request lasts until the last read on its socket before the next request on it.
    reqs.sort()
    intervals, per_cat = [], {}
    for i, (t, fd, method, p) in enumerate(reqs):
        nxt = next((r[0] for r in reqs[i + 1:] if r[1] == fd), float("inf"))
        rs = [rt for rt, _ in reads.get(fd, []) if t <= rt < nxt]
        end = max(rs) if rs else t
        first = min(rs) if rs else t
        intervals.append((t, end))
        cat = categorize(method, p)
        e = per_cat.setdefault(cat, {"n": 0, "total": 0.0, "first_byte": 0.0})
        e["n"] += 1
        e["total"] += end - t
        e["first_byte"] += first - t
    busy = 0.0
    cur_s = cur_e = None
    gaps = []
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
                gaps.append((s - cur_e, cur_e))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    total = (t_last - t_first) if t_first is not None else 0.0
    first_req = reqs[0][0] if reqs else t_last
    last_end = cur_e if cur_e is not None else t_last
    return {
        "total": total, "engine": busy, "ours": total - busy, "requests": len(reqs),
        "startup": (first_req - t_first) if t_first is not None else 0.0,
        "shutdown": (t_last - last_end) if t_last is not None else 0.0,
        "gaps_between": sum(g for g, _ in gaps),
        "largest_gaps": sorted(((g, at - t_first) for g, at in gaps), reverse=True)[:5],
        "per_category": per_cat,
    }


# ---------------------------------------------------------------------------------------------
# Report.


def stats(xs):
    return (statistics.median(xs), min(xs), max(xs)) if xs else (None, None, None)


def fmt(x, unit="s"):
    return "–" if x is None else f"{x:.3f}{unit}" if unit == "s" else f"{x:.2f}"


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1024
    osr = {}
    for line in open("/etc/os-release"):
        if "=" in line:
            k, v = line.strip().split("=", 1)
            osr[k] = v.strip('"')
    pkgs = sh(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "docker.io", "docker-registry",
               "packer"], check=False).stdout.strip().replace("\n", ", ")
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores (shared with other work)",
        f"Memory: {mem} MiB; kernel {platform.release()}; {osr.get('PRETTY_NAME', '?')}",
        f"Packages: {pkgs}",
        f"Docker engine storage driver: "
        + sh([DOCKER, "info", "--format", "{{.Driver}}"], check=False).stdout.strip(),
        f"Python {platform.python_version()}",
    ]


def write_results(b, workloads, argv):
    L = []
    A = L.append
    A("# Benchmark results: `pipeline apply` vs docker CLI script vs Packer\n")
    A(f"Generated by `{argv}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')} "
      f"(run id `{b.runid}`, {(time.time() - b.started) / 60:.1f} min). This file is rewritten on every run; "
      "see [README.md](README.md) for the method.\n")
    A("## Machine\n")
    for m in machine():
        A(f"- {m}")
    A(f"- pipeline: `{b.version}`, git {b.git}; release build, snapshot copied before the run")
    la, lb = b.loadavg_start, os.getloadavg()
    A(f"- Load average at start {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, at end {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}")
    A(f"- Mode: {'quick (workload a only)' if b.args.quick else 'full'}, {b.args.rounds} timed rounds per "
      "workload after one untimed warm-up round\n")

    A("## Wall time\n")
    A("Median [min – max] seconds over the successful runs; n = runs. Ratios use medians. "
      "`warm` is an unchanged re-apply (pipeline only; its ratios compare with the others' **cold** time). "
      "`edited` changes only the last step; the CLI script and Packer have no cache, so for them it is a full rebuild.\n")
    goals = []
    meds = {}
    for w in workloads:
        A(f"### ({w.key}) {w.title}\n")
        A("| scenario | tool | n | median | min | max | pipeline / CLI | pipeline / Packer | pipeline peak RSS | pipeline CPU (user+sys) |")
        A("|---|---|---|---|---|---|---|---|---|---|")
        med = {}
        for sc in SCENARIOS:
            for tool in SCENARIO_TOOLS[sc]:
                rows = [r for r in b.results if r["workload"] == w.key and r["scenario"] == sc and r["tool"] == tool]
                ok = [r["wall"] for r in rows if r["ok"]]
                md, mn, mx = stats(ok)
                med[(sc, tool)] = md
        for sc in SCENARIOS:
            for tool in SCENARIO_TOOLS[sc]:
                rows = [r for r in b.results if r["workload"] == w.key and r["scenario"] == sc and r["tool"] == tool]
                ok = [r["wall"] for r in rows if r["ok"]]
                md, mn, mx = stats(ok)
                n = f"{len(ok)}" + (f" ({len(rows) - len(ok)} failed)" if len(ok) < len(rows) else "")
                r1 = r2 = rss = cpu = ""
                if tool == "pipeline" and md is not None:
                    ref = "cold" if sc == "warm" else sc
                    c, p = med.get((ref, "cli")), med.get((ref, "packer"))
                    r1 = f"{md / c:.2f}" if c else "–"
                    r2 = f"{md / p:.2f}" if p else "–"
                    rss = f"{max(r['rss_kib'] for r in rows if r['rss_kib']) / 1024:.1f} MiB"
                    cpu = f"{statistics.median(r['cpu_s'] for r in rows if r['cpu_s'] is not None):.3f}s"
                A(f"| {sc} | {tool} | {n} | {fmt(md)} | {fmt(mn)} | {fmt(mx)} | {r1} | {r2} | {rss} | {cpu} |")
        A("")
        notes = []
        for sc in SCENARIOS:
            rows = [r for r in b.results if r["workload"] == w.key and r["scenario"] == sc
                    and r["tool"] == "pipeline" and r["ok"] and r["ran"] is not None]
            if rows:
                ran = sorted({r["ran"] for r in rows})
                cached = sorted({r["cached"] for r in rows})
                notes.append(f"{sc}: ran {'/'.join(map(str, ran))}, cached {'/'.join(map(str, cached))}")
        if notes:
            A("Steps pipeline ran and took from its cache, per scenario: " + "; ".join(notes) + ".\n")
        meds[w.key] = med
        pc, cc, kc, pw = med.get(("cold", "pipeline")), med.get(("cold", "cli")), med.get(("cold", "packer")), med.get(("warm", "pipeline"))
        if pc and cc:
            goals.append((f"({w.key}) cold: pipeline / CLI ≤ 0.8", pc / cc, pc / cc <= 0.8))
        if pc and kc:
            goals.append((f"({w.key}) cold: pipeline / Packer ≤ 0.4", pc / kc, pc / kc <= 0.4))
        if pw and kc:
            goals.append((f"({w.key}) warm pipeline / Packer cold ≤ 0.1", pw / kc, pw / kc <= 0.1))

    all_rss = [r["rss_kib"] for r in b.results if r["rss_kib"]]
    big = getattr(b, "big", None) or []
    big_rss = [r["rss_kib"] for r in big if r["rss_kib"]]
    if all_rss or big_rss:
        peak = max(all_rss + big_rss) / 1024
        goals.append(("peak RSS of pipeline < 30 MiB (all runs and the 100 MB copy)", peak, peak < 30))

    A("## 100 MB copy (one-shot RSS check)\n")
    if big:
        A("busybox base, one shell step, a 100 MB random file copied in, commit, 1 tag pushed.\n")
        A("| run | wall | peak RSS | CPU (user+sys) | ok |")
        A("|---|---|---|---|---|")
        for r in big:
            A(f"| {r['scenario']} | {r['wall']:.3f}s | {(r['rss_kib'] or 0) / 1024:.1f} MiB | {r['cpu_s'] or 0:.3f}s | {r['ok']} |")
        A("")
    else:
        A("Not run.\n")

    A("## Goals\n")
    A("| goal | measured | met |")
    A("|---|---|---|")
    for name, val, ok in goals:
        unit = " MiB" if "RSS" in name else ""
        A(f"| {name} | {val:.2f}{unit} | {'yes' if ok else '**no**'} |")
    A("")

    A("## Summary: where the time goes\n")
    for line in summary(b, workloads, meds):
        A(f"- {line}")
    A("")
    A("## Profile: a cold apply under strace\n")
    profs = [p for p in getattr(b, "profiles", []) + [getattr(b, "big_profile", None)] if p]
    if not profs:
        A("Not profiled (`--no-profile` or no strace).\n")
    A("Each Engine API request the process writes to a socket (`strace -f -ttt`) is timed from the request "
      "line to the last byte read on that socket before its next request. *Engine* is the wall time during "
      "which at least one request is outstanding; *ours* is the rest (process start to first request, "
      "gaps between requests, exit). strace slows the process a little, so *ours* is an upper bound.\n")
    for p in profs:
        A(f"### {p['label']}: {p['total']:.3f}s traced, {p['requests']} requests\n")
        A(f"- engine (≥1 request outstanding): {p['engine']:.3f}s ({100 * p['engine'] / max(p['total'], 1e-9):.0f}%)")
        A(f"- ours: {p['ours']:.3f}s = start-up to first request {p['startup']:.3f}s + gaps between "
          f"requests {p['gaps_between']:.3f}s + after the last response {p['shutdown']:.3f}s")
        if p["largest_gaps"]:
            A("- largest gaps: " + ", ".join(f"{g * 1000:.1f} ms at +{at:.3f}s" for g, at in p["largest_gaps"]))
        A("")
        A("| request | n | total | mean | mean to first byte |")
        A("|---|---|---|---|---|")
        for cat, e in sorted(p["per_category"].items(), key=lambda kv: -kv[1]["total"]):
            A(f"| {cat} | {e['n']} | {e['total'] * 1000:.0f} ms | {e['total'] * 1000 / e['n']:.1f} ms | "
              f"{e['first_byte'] * 1000 / e['n']:.1f} ms |")
        A("")
    A(ANALYSIS_NOTE)

    if b.failures:
        A("## Failed runs\n")
        for wk, sc, tool, rnd, rc, tail in b.failures:
            A(f"- ({wk}) {sc} {tool} round {rnd}: exit {rc}\n\n```\n{tail}\n```\n")

    A("## Exact commands\n")
    A("Each round runs, in this order: cold (pipeline, CLI, Packer), warm (pipeline), edited "
      "(pipeline, CLI, Packer). Commands, with `$T` the run's temp folder:\n")
    A("- pipeline: `PIPELINE_PROGRESS=plain /usr/bin/time -f '%M %U %S' -o $T/rss.txt $T/pipeline apply $T/<w>/pipeline/pipeline.toml`")
    A("- CLI: `bash $T/<w>/cli/build.sh`")
    A("- Packer: `PATH=/usr/bin:$PATH HOME=$T/packer-home PACKER_CACHE_DIR=$T/packer-cache CHECKPOINT_DISABLE=1 "
      "packer build -color=false $T/<w>/packer/template.json`\n")
    A("The generated files of round 1, cold (the edited scenario changes only the last step; the "
      "nonce changes every round):\n")
    for w in workloads:
        nonce, rid = "NONCE", b.runid
        steps = w.steps(nonce, None)
        repo = f"{REGISTRY}/bench/{rid}/{w.key}-TOOL"
        A(f"<details><summary>({w.key}) pipeline.toml, build.sh, template.json</summary>\n")
        A("```toml\n" + render_pipeline(w, steps, f"bench-{rid}-{w.key}", repo.replace("TOOL", "pipeline"),
                                         f"bench-{rid}/{w.key}-pipeline:latest") + "```\n")
        A("```bash\n" + render_cli(w, steps, f"bench-{rid}-{w.key}-N", repo.replace("TOOL", "cli"),
                                    f"bench-{rid}/{w.key}-cli:latest", Path("$T") / w.key / "cli") + "```\n")
        A("```json\n" + render_packer(w, steps, repo.replace("TOOL", "packer"), Path("$T") / w.key / "packer") + "```\n")
        A("</details>\n")
    A(f"Cleanup: {getattr(b, 'cleanup_note', 'not run')}. Pushed repositories stay in the registry under "
      f"`{REGISTRY}/bench/{b.runid}/`.\n")
    text = "\n".join(L)
    # Sections of workloads that write their own (d, f) stay as the last run of them left them.
    old = (BENCH / "RESULTS.md").read_text() if (BENCH / "RESULTS.md").exists() else ""
    kept = re.findall(r"<!-- workload (\w+): .*?<!-- end of workload \1 -->\n", old, re.S)
    for key in kept:
        begin, end = markers(key)
        block = begin + old.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
        text = text.replace("## Exact commands", block + "\n## Exact commands", 1)
    (BENCH / "RESULTS.md").write_text(text)
    old_raw = json.loads((BENCH / "results.json").read_text()) if (BENCH / "results.json").exists() else {}
    raw = {k: v for k, v in old_raw.items() if k.startswith("workload_")}
    raw |= {"runid": b.runid, "results": b.results, "big": getattr(b, "big", None),
           "profiles": getattr(b, "profiles", []), "big_profile": getattr(b, "big_profile", None)}
    (BENCH / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    log(f"wrote {BENCH / 'RESULTS.md'}")


def markers(key):
    """The comments around the RESULTS.md section of a workload that writes its own (d, f)."""
    return (f"<!-- workload {key}: written by `python3 bench/run.py --workloads {key}`; kept by other runs -->",
            f"<!-- end of workload {key} -->")


D_BEGIN, D_END = markers("d")


def d_section(b, w, argv):
    """The (d) section of RESULTS.md."""
    L = [D_BEGIN, f"## ({w.key}) {w.title}\n"]
    A = L.append
    la, lb = b.loadavg_start, os.getloadavg()
    A(f"Generated by `{argv}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')} (run id "
      f"`{b.runid}`, pipeline `{b.version}`, git {b.git}). Load average at start {la[0]:.2f} {la[1]:.2f} "
      f"{la[2]:.2f}, at end {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}"
      + (": the 2 cores were shared with other work while it ran, so absolute times are under load"
         if max(la[0], lb[0]) > 2.5 else "")
      + "; the tools ran interleaved.\n")
    A("An untimed cold round first fills pipeline's cache mounts (`/var/cache/apt`, `/var/lib/apt/lists`, "
      "with the README's apt recipe). Then every round changes the apt step's command (a new nonce) and "
      "each tool rebuilds: pipeline re-runs the step with the warm cache mounts (apt downloads only the "
      "release file), the CLI script and Packer run the same commands without cache mounts (full "
      "`apt-get update` and package downloads, lists removed as a Dockerfile does). All three then copy "
      "the vimrc, commit, tag and push 2 tags.\n")
    A("| scenario | tool | n | median | min | max | pipeline / CLI | pipeline / Packer | pipeline peak RSS |")
    A("|---|---|---|---|---|---|---|---|---|")
    med = {}
    for tool in TOOLS:
        ok = [r["wall"] for r in b.results if r["workload"] == w.key and r["tool"] == tool and r["ok"]]
        med[tool] = stats(ok)[0]
    for tool in TOOLS:
        rows = [r for r in b.results if r["workload"] == w.key and r["tool"] == tool]
        ok = [r["wall"] for r in rows if r["ok"]]
        md, mn, mx = stats(ok)
        n = f"{len(ok)}" + (f" ({len(rows) - len(ok)} failed)" if len(ok) < len(rows) else "")
        r1 = r2 = rss = ""
        if tool == "pipeline" and md is not None:
            r1 = f"{md / med['cli']:.2f}" if med["cli"] else "–"
            r2 = f"{md / med['packer']:.2f}" if med["packer"] else "–"
            rss = f"{max((r['rss_kib'] or 0) for r in rows) / 1024:.1f} MiB"
        A(f"| rebuild | {tool} | {n} | {fmt(md)} | {fmt(mn)} | {fmt(mx)} | {r1} | {r2} | {rss} |")
    A("")
    for tool in TOOLS:
        rows = [r for r in b.results if r["workload"] == w.key and r["tool"] == tool and r["ok"]]
        if rows:
            A(f"- {tool}: apt `Get:` lines (downloads) per rebuild: "
              f"{', '.join(str(r['apt_gets']) for r in rows)}; seconds apt reports for them "
              f"(`Fetched ... in Ns`, whole seconds): {', '.join(str(r['apt_fetch_s']) for r in rows)}")
    A("")
    A("What the cache mounts save is apt's fetching and writing of the package lists (about 15 MB) "
      "and the 5 packages (about 9 MB); apt reports only a few seconds of downloads per rebuild for "
      "the CLI script and Packer, since the Debian mirror is fast here, and the rest of the gap varies "
      "with the load (see min/max). What every tool pays alike is dpkg unpacking and configuring vim "
      "on a loaded machine, the commit of the new layer and the pushes. Where downloads are slow (a "
      "distant mirror, many packages) the saving grows with them.\n")
    pc, cc = med["pipeline"], med["cli"]
    if pc and cc:
        A("| goal | measured | met |")
        A("|---|---|---|")
        A(f"| ({w.key}) rebuild with warm caches: pipeline / CLI ≤ 0.5 | {pc / cc:.2f} | "
          f"{'yes' if pc / cc <= 0.5 else '**no**'} |")
        A("")
    d_fail = [f for f in b.failures if f[0] == w.key]
    for wk, sc, tool, rnd, rc, tail in d_fail:
        A(f"- failed: ({wk}) {sc} {tool} round {rnd}: exit {rc}\n\n```\n{tail}\n```\n")
    steps = w.steps_for("pipeline", "NONCE", None)
    rid = b.runid
    A("<details><summary>(d) pipeline.toml, build.sh, template.json</summary>\n")
    A("```toml\n" + render_pipeline(w, steps, f"bench-{rid}-d", f"{REGISTRY}/bench/{rid}/d-pipeline",
                                     f"bench-{rid}/d-pipeline:latest") + "```\n")
    A("```bash\n" + render_cli(w, w.steps_for("cli", "NONCE", None), f"bench-{rid}-d-N",
                                f"{REGISTRY}/bench/{rid}/d-cli", f"bench-{rid}/d-cli:latest",
                                Path("$T") / "d" / "cli") + "```\n")
    A("```json\n" + render_packer(w, w.steps_for("packer", "NONCE", None), f"{REGISTRY}/bench/{rid}/d-packer",
                                   Path("$T") / "d" / "packer") + "```\n")
    A("</details>\n")
    A(D_END)
    return "\n".join(L) + "\n"


def merge_section(b, key, section):
    """Puts workload `key`'s section into RESULTS.md, keeping everything else there (the other
    workloads' last results), and its runs into results.json under `workload_<key>`."""
    begin, end = markers(key)
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        marker = "## Exact commands"
        text = text.replace(marker, section + "\n" + marker, 1) if marker in text else text + "\n" + section
    path.write_text(text)
    raw_path = BENCH / "results.json"
    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    raw[f"workload_{key}"] = {"runid": b.runid, "results": [r for r in b.results if r["workload"] == key]}
    raw_path.write_text(json.dumps(raw, indent=1, default=str) + "\n")
    log(f"wrote the ({key}) section of {path}")


def summary(b, workloads, meds):
    """Plain statements derived from the numbers above."""
    out = []
    profs = {p["label"]: p for p in getattr(b, "profiles", []) if p}
    for w in workloads:
        med = meds.get(w.key, {})
        pc, cc, kc = med.get(("cold", "pipeline")), med.get(("cold", "cli")), med.get(("cold", "packer"))
        if not pc:
            continue
        cpu = [r["cpu_s"] for r in b.results if r["workload"] == w.key and r["scenario"] == "cold"
               and r["tool"] == "pipeline" and r["ok"] and r["cpu_s"] is not None]
        c = statistics.median(cpu) if cpu else 0.0
        n_cli = render_cli(w, w.steps("N", None), "C", "R", "L:latest", Path("/")).count("\n$D ")
        text = (f"({w.key}) cold: pipeline {pc:.3f}s wall of which {c * 1000:.0f} ms is its own CPU "
                f"({100 * c / pc:.1f}%); the rest is waiting for the engine.")
        if cc:
            per = 1000 * (cc - pc) / n_cli
            if cc < pc:
                text += (f" The CLI script takes {pc - cc:.3f}s less: pipeline's extra engine work for its "
                         "cache (see below) outweighs the CLI's per-command cost.")
            else:
                why = (f"{n_cli} docker commands, {per:.0f} ms each: the CLI's start-up and its own request "
                       "round trips" if per < 100 else
                       "mostly the run-to-run variance of the work inside the container: see min/max")
                text += f" The CLI script takes {cc - pc:.3f}s more for the same engine work ({why})."
        if kc:
            text += f" Packer takes {kc - pc:.3f}s more (its start-up, provisioner uploads, several `docker` calls per step)."
        p = profs.get(f"({w.key}) cold")
        if p:
            top = sorted(p["per_category"].items(), key=lambda kv: -kv[1]["total"])[:4]
            text += (f" Under strace {100 * p['engine'] / max(p['total'], 1e-9):.0f}% of the apply has an "
                     f"engine request outstanding and {p['ours'] * 1000:.0f} ms is pipeline's own; the largest "
                     "engine items: " + ", ".join(f"{k} {e['total'] * 1000:.0f} ms" for k, e in top) + ".")
        out.append(text)
        for tool, other, limit in (("the CLI script", cc, 0.8), ("Packer", kc, 0.4)):
            if not other or pc / other <= limit:
                continue
            diff = (f"takes only {other - pc:.3f}s more than pipeline" if other >= pc
                    else f"is {pc - other:.3f}s faster than pipeline")
            text = (f"({w.key}) misses pipeline/{tool.split()[-1].replace('script', 'CLI')} ≤ {limit} ({pc / other:.2f}): {tool} "
                    f"{diff}, while the work inside the container takes "
                    f"about {pc - c:.1f}s for every tool. Meeting {limit}x would need pipeline ≤ "
                    f"{limit * other:.3f}s, less than that work alone: no change to pipeline can reach it on "
                    "this workload.")
            if p:
                cats = p["per_category"]
                n = lambda k: cats.get(k, {}).get("n", 0)
                ms = lambda k: cats.get(k, {}).get("total", 0.0) * 1000
                text += (f" What pipeline does on top of {tool}'s work is its cache: {n('commit')} commits "
                         f"({ms('commit'):.0f} ms) and {n('container start')} container starts "
                         f"({ms('container start'):.0f} ms) where the others do 1 and 1, because a step slower "
                         "than `cache.checkpoint_after` is checkpointed and the next step continues in a new "
                         "container from that checkpoint.")
            out.append(text)
    big = getattr(b, "big", None) or []
    bp = getattr(b, "big_profile", None)
    if big:
        text = (f"100 MB copy: peak RSS {max(r['rss_kib'] or 0 for r in big) / 1024:.1f} MiB (the copy is "
                "streamed)")
        if bp:
            text += (f"; pipeline's own time is {bp['ours'] * 1000:.0f} ms (the largest gap, "
                     f"{bp['largest_gaps'][0][0] * 1000:.0f} ms at the start, is hashing the file for the cache "
                     "key), the rest is the engine storing, committing and pushing 100 MB")
        out.append(text + ".")
    return out


ANALYSIS_NOTE = """\
Reading the profile: the engine's own cost per operation on this machine is in
`/work/shared/notes/engine-facts.md` (container start ≈186 ms, exec ≈41–48 ms, commit ≈48–64 ms,
upload 200 kB ≈43 ms, remove ≈104 ms, push ≈44/12 ms). Requests whose mean here is close to those
numbers are engine-bound; time that shows up as *ours* or as a request much slower than the engine's
own figure is the tool's. The CLI script pays ≈20–25 ms of docker CLI start-up per command on top of
the same engine work; Packer adds its plugin start-up, a script upload per shell provisioner and
several `docker exec` calls per step.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only workload (a)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per workload (default 5)")
    ap.add_argument("--workloads", default=None, help="comma-separated subset of a,b,c,d,f")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--no-profile", action="store_true", help="skip the strace profiles")
    ap.add_argument("--no-big", action="store_true", help="skip the 100 MB copy RSS check")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp folder (generated files, logs, traces)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    b = Bench(args)
    log(f"run id {b.runid}, temp folder {b.tmp}")
    vimrc = (REPO / "examples" / "debian-vim" / "files" / "vimrc").read_text() \
        if (REPO / "examples" / "debian-vim" / "files" / "vimrc").exists() else "set number\nsyntax on\n"
    blob = os.urandom(200 * 1000)
    every = {"a": SmallBusybox(b.runid, blob), "b": DebianVim(b.runid, vimrc), "c": TwentySteps(b.runid),
             "d": DebianVimCached(b.runid, vimrc)}
    keys = args.workloads.split(",") if args.workloads else (["a"] if args.quick else ["a", "b", "c", "d", "f"])
    unknown = [k for k in keys if k not in every and k != "f"]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}: choose from a, b, c, d, f")
    rebuilds = [every[k] for k in keys if k == "d"]
    workloads = [every[k] for k in keys if k in every and k != "d"]
    b.fresh = fresh.FreshRunner(b, REGISTRY, DOCKER) if "f" in keys else None
    b.profiles = []
    try:
        b.build()
        b.preflight()
        for w in workloads:
            b.workload(w, args.rounds)
        for w in rebuilds:
            b.workload(w, args.rounds, ["rebuild"], {"rebuild": TOOLS})
        if b.fresh:
            b.fresh.run(args.rounds)
        if not args.no_profile:
            for w in workloads:
                if w.key in ("a", "b", "c"):
                    b.profiles.append(b.profile(w, f"({w.key}) cold"))
        if not args.no_big:
            b.big_copy()
    finally:
        b.profiles = [p for p in b.profiles if p]
        b.cleanup()
    argv = "python3 bench/run.py " + " ".join(sys.argv[1:])
    # A run of (d) alone leaves the other workloads' last results in RESULTS.md as they are.
    if workloads:
        write_results(b, workloads, argv)
    for w in rebuilds:
        merge_section(b, "d", d_section(b, w, argv))
    if b.fresh:
        merge_section(b, "f", fresh.section(b, b.fresh, argv, markers("f")))
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())
