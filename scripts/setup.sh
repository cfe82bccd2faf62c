#!/usr/bin/env bash
# Prepare this machine (Debian bookworm, root) for `pipeline` development and its tests:
# packages, a Docker engine, a plain registry on 127.0.0.1:5000 and the local base images
# busybox:latest and debian:bookworm. Idempotent: each step is skipped when already done.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
STATE=/var/lib/pipeline-dev
CACHE=/var/cache/pipeline-dev
REGISTRY_ADDR=127.0.0.1:5000
DOCKERD_LOG=/var/log/pipeline-dockerd.log
REGISTRY_LOG=/var/log/pipeline-registry.log

say() { printf '%-28s %s\n' "$1:" "$2"; }
die() { echo "setup.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# --- packages -------------------------------------------------------------------------
missing=()
for pkg in docker.io docker-registry busybox-static debootstrap curl openssl iproute2 podman catatonit; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  say packages "already present"
else
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || echo "setup.sh: apt-get update reported errors; trying to install anyway" >&2
  apt-get install -y -q "${missing[@]}"
  say packages "installed ${missing[*]}"
fi

# --- docker engine --------------------------------------------------------------------
if "$DOCKER" info >/dev/null 2>&1; then
  say "docker engine" "already present"
else
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break # dockerd exited
    sleep 0.5
  done
  "$DOCKER" info >/dev/null 2>&1 || {
    tail -n 30 "$DOCKERD_LOG" >&2
    die "dockerd did not come up (exited, or no answer within 30 s); log: $DOCKERD_LOG"
  }
  say "docker engine" "started (log: $DOCKERD_LOG)"
fi

# --- registry on 127.0.0.1:5000 -------------------------------------------------------
if curl -sf -o /dev/null "http://$REGISTRY_ADDR/v2/"; then
  say "registry $REGISTRY_ADDR" "already present"
else
  if (exec 3<>"/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR#*:}") 2>/dev/null; then
    die "something listens on $REGISTRY_ADDR but GET /v2/ fails: not an open registry"
  fi
  mkdir -p "$STATE/registry"
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
  setsid nohup docker-registry serve "$STATE/registry.yml" >>"$REGISTRY_LOG" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 40); do
    curl -sf -o /dev/null "http://$REGISTRY_ADDR/v2/" && break
    kill -0 "$pid" 2>/dev/null || break # registry exited
    sleep 0.25
  done
  curl -sf -o /dev/null "http://$REGISTRY_ADDR/v2/" || {
    tail -n 30 "$REGISTRY_LOG" >&2
    die "registry did not come up on $REGISTRY_ADDR (exited, or no answer within 10 s); log: $REGISTRY_LOG"
  }
  say "registry $REGISTRY_ADDR" "started (log: $REGISTRY_LOG)"
fi

# --- base images ----------------------------------------------------------------------
has_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# Unmount whatever debootstrap may have left mounted below $1, then delete it.
remove_tree() {
  awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$1"
}

if has_image busybox:latest; then
  say "image busybox:latest" "already present"
else
  dir=$(mktemp -d)
  trap 'remove_tree "$dir"' EXIT
  mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp}
  chmod 1777 "$dir/tmp"
  chmod 700 "$dir/root"
  cp /bin/busybox "$dir/bin/busybox"
  /bin/busybox --list-full | while read -r applet; do
    [ -e "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:42:42:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnobody:x:42:\n' >"$dir/etc/group"
  tar -C "$dir" --numeric-owner -c . | "$DOCKER" import --change 'CMD ["sh"]' - busybox:latest >/dev/null
  remove_tree "$dir"
  trap - EXIT
  say "image busybox:latest" "built"
fi

if has_image debian:bookworm; then
  say "image debian:bookworm" "already present"
else
  tarball=$CACHE/debian-bookworm.tar
  how="imported from $tarball"
  if [ ! -s "$tarball" ]; then
    mkdir -p "$CACHE"
    dir=$(mktemp -d /var/tmp/pipeline-debootstrap.XXXXXX)
    trap 'remove_tree "$dir"' EXIT
    echo "debootstrap bookworm (about 2 minutes, log: $CACHE/debootstrap.log)..."
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian \
      >"$CACHE/debootstrap.log" 2>&1 || {
      tail -n 30 "$CACHE/debootstrap.log" >&2
      die "debootstrap failed"
    }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    remove_tree "$dir"
    trap - EXIT
    how="built"
  fi
  "$DOCKER" import --change 'CMD ["bash"]' "$tarball" debian:bookworm >/dev/null
  say "image debian:bookworm" "$how"
fi
