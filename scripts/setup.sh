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
for pkg in docker.io docker-registry busybox-static debootstrap curl openssl iproute2 podman catatonit skopeo time; do
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

# --- arm64 by emulation, and a multi-arch base ----------------------------------------
# qemu-user-static registers its binfmt handlers, so an arm64 container runs on this amd64
# machine (`uname -m` says aarch64). The tests build for linux/amd64 and linux/arm64 from
# $REGISTRY_ADDR/busybox-multi:latest, an index of busybox for both; :amd64 and :arm64 are
# its single-platform images.
missing=()
for pkg in qemu-user-static binfmt-support; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "emulation packages" "already present"
else
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  say "emulation packages" "installed ${missing[*]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ "$(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" != enabled ]; then
  update-binfmts --enable qemu-aarch64 || update-binfmts --enable
fi
[ "$(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" = enabled ] ||
  die "the qemu-aarch64 binfmt handler is not enabled"
say "binfmt qemu-aarch64" "enabled"

MULTI=$REGISTRY_ADDR/busybox-multi
has_index() {
  curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
    -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REGISTRY_ADDR/v2/${1%:*}/manifests/${1##*:}" |
    grep -q '"arm64"'
}
if has_index busybox-multi:latest && has_image busybox-arm64:latest; then
  say "image $MULTI:latest" "already present"
else
  if ! has_image busybox-arm64:latest; then
    # A docker-archive whose config says arm64: `docker import --platform` does not set the
    # architecture on engine 20.10, `docker load` of such an archive does.
    grep -qx arm64 <(dpkg --print-foreign-architectures) || {
      dpkg --add-architecture arm64
      apt-get update -q || true
    }
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    (cd "$dir" && apt-get download -q busybox-static:arm64 >/dev/null)
    dpkg-deb -x "$dir"/busybox-static_*_arm64.deb "$dir/deb"
    root=$dir/root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp}
    chmod 1777 "$root/tmp"
    chmod 700 "$root/root"
    cp "$dir/deb/bin/busybox" "$root/bin/busybox"
    # The applet list is the amd64 busybox's: the same package version, the same applets.
    /bin/busybox --list-full | while read -r applet; do
      [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:42:42:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:42:\n' >"$root/etc/group"
    mkdir -p "$dir/archive"
    tar -C "$root" --numeric-owner -cf "$dir/archive/layer.tar" .
    diff_id=sha256:$(sha256sum "$dir/archive/layer.tar" | cut -d' ' -f1)
    cat >"$dir/archive/config.json" <<JSON
{"architecture":"arm64","variant":"v8","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["$diff_id"]}}
JSON
    cfg=$(sha256sum "$dir/archive/config.json" | cut -d' ' -f1)
    mv "$dir/archive/config.json" "$dir/archive/$cfg.json"
    printf '[{"Config":"%s.json","RepoTags":["busybox-arm64:latest"],"Layers":["layer.tar"]}]\n' "$cfg" \
      >"$dir/archive/manifest.json"
    tar -C "$dir/archive" -c . | "$DOCKER" load >/dev/null
    rm -rf "$dir"
    trap - EXIT
  fi
  [ "$("$DOCKER" image inspect -f '{{.Architecture}}' busybox-arm64:latest)" = arm64 ] ||
    die "busybox-arm64:latest does not say arm64"
  for pair in busybox:latest=amd64 busybox-arm64:latest=arm64; do
    "$DOCKER" tag "${pair%=*}" "$MULTI:${pair#*=}"
    "$DOCKER" push "$MULTI:${pair#*=}" >/dev/null
  done
  # The CLI of the engine (20.10) has no `manifest`; a newer one may be installed beside it.
  MANIFEST_CLI=${MANIFEST_CLI:-/usr/local/bin/docker}
  "$MANIFEST_CLI" manifest rm "$MULTI:latest" >/dev/null 2>&1 || true
  "$MANIFEST_CLI" manifest create --insecure "$MULTI:latest" "$MULTI:amd64" "$MULTI:arm64" >/dev/null
  "$MANIFEST_CLI" manifest push --insecure --purge "$MULTI:latest" >/dev/null
  has_index busybox-multi:latest || die "$MULTI:latest is not an index with arm64"
  say "image $MULTI:latest" "built (amd64 + arm64)"
fi
"$DOCKER" run --rm --platform linux/arm64 busybox-arm64:latest uname -m | grep -qx aarch64 ||
  die "an arm64 container does not run here (binfmt/qemu)"
say "arm64 by emulation" "works"
