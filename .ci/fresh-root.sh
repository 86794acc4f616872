#!/usr/bin/env bash
# .ci/fresh-root.sh: runs `CI=true make test` on a fresh clone inside a
# throwaway Debian bookworm root that holds nothing but Debian's minimal base,
# Go (the host's GOROOT, same version), OpenJDK 17, Maven, git, make and
# ca-certificates: everything else the suite needs, `make test` must install.
#
#   .ci/fresh-root.sh [REPO [REF]]
#
#   REPO  the git repository to clone (default: the one holding this script)
#   REF   the commit, branch or tag to test (default: REPO's HEAD)
#
# Environment (all optional):
#   SHARED        the shared docs and fixtures, seen as ../shared by the clone
#                 (default: REPO/../shared; bind-mounted read-only)
#   CACHE         where the base root is cached (default: /var/cache/segvault-fresh-root)
#   DEBIAN_MIRROR the Debian mirror (default: the host's, else deb.debian.org)
#   TARGET        the make goal (default: test)
#   KEEP=1        keep the root after the run (under /var/tmp) for inspection
#                 (without it a failed run keeps only its logs)
#   NICE          nice level of the run (default: 19)
#
# Needs root and Debian's apt (it installs debootstrap and systemd-container
# on the host when missing). The base root is built once with debootstrap and
# cached as $CACHE/bookworm-base.tar.zst; each run unpacks a new copy, so the
# run starts with empty Go, Maven and .tools caches: its `make tools
# packaging-tools` step downloads and builds everything, as on a new machine.
# The root shares the host's network (Go proxy, Maven Central, Debian mirror).
# The run is timed: first the tool installation (`make tools packaging-tools`),
# then the whole `make test`; the log is $WORK/run.log.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "${1:-$here}" && git rev-parse --show-toplevel)
REF=${2:-HEAD}
SHARED=${SHARED:-$REPO/../shared}
CACHE=${CACHE:-/var/cache/segvault-fresh-root}
TARGET=${TARGET:-test}
NICE=${NICE:-19}
KEEP=${KEEP:-}
BASE=$CACHE/bookworm-base.tar.zst
GOROOT_HOST=$(go env GOROOT)
GOVERSION=$(go env GOVERSION)

T0=$SECONDS
log() { printf '\n==> [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
fail() {
	printf '\nFAIL: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) == 0 ]] || fail "fresh-root.sh needs root (debootstrap, systemd-nspawn)"
[[ -d $SHARED ]] || fail "no shared docs and fixtures at $SHARED (set SHARED)"
SHARED=$(cd "$SHARED" && pwd -P)
COMMIT=$(git -C "$REPO" rev-parse --verify "$REF^{commit}") || fail "$REPO: no commit $REF"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v zstd >/dev/null || need+=(zstd)
if ((${#need[@]})); then
	log "installing ${need[*]} on the host"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d /var/tmp/segvault-fresh-root.XXXXXX)
ROOT=$WORK/root
cleanup() {
	local rc=$?
	set +e
	if [[ -n $KEEP ]]; then
		echo "fresh-root: exit $rc after $((SECONDS - T0))s; the root and logs are in $WORK" >&2
	elif ((rc != 0)); then
		rm -rf "$ROOT"
		echo "fresh-root: exit $rc after $((SECONDS - T0))s; the logs are in $WORK (KEEP=1 keeps the root too)" >&2
	else
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT

# inroot DIR CMD...: run CMD chrooted into DIR (apt, while building the base).
inroot() {
	local dir=$1
	shift
	chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}

# --- the base root: Debian minbase + OpenJDK 17, Maven, git, make ---------------
if [[ ! -s $BASE ]]; then
	mirror=${DEBIAN_MIRROR:-}
	if [[ -z $mirror ]]; then
		mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | sed -n 1p || true)
		mirror=${mirror:-http://deb.debian.org/debian}
	fi
	log "debootstrap bookworm from $mirror (once; cached as $BASE)"
	b=$WORK/base
	nice debootstrap --variant=minbase --include=ca-certificates bookworm "$b" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
		fail "debootstrap failed: see $WORK/debootstrap.log"
	# A fresh machine's apt also sees the security and update suites.
	cat >"$b/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
	log "installing OpenJDK 17, Maven, git and make into the base root"
	mount -t proc proc "$b/proc"
	# shellcheck disable=SC2064
	trap "umount '$b/proc' 2>/dev/null; cleanup" EXIT
	cp /etc/resolv.conf "$b/etc/resolv.conf"
	{ inroot "$b" apt-get update -qq && inroot "$b" apt-get install -y -qq --no-install-recommends \
		openjdk-17-jdk-headless maven git make ca-certificates; } >"$WORK/base-apt.log" 2>&1 ||
		fail "apt-get in the base root failed: see $WORK/base-apt.log"
	umount "$b/proc"
	trap cleanup EXIT
	inroot "$b" apt-get clean
	rm -rf "$b/var/lib/apt/lists/"*
	mkdir -p "$CACHE"
	tar --zstd -C "$b" -cf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
	rm -rf "$b"
fi

# --- this run's root ---------------------------------------------------------------
log "unpacking a new root from $BASE"
mkdir -p "$ROOT"
tar --zstd -C "$ROOT" -xf "$BASE"
log "copying Go $GOVERSION from $GOROOT_HOST"
cp -a "$GOROOT_HOST" "$ROOT/usr/local/go"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# The host's CA trust (for Go's and Maven's TLS: a proxy's CA the host trusts
# must be trusted inside too).
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
[[ -s /etc/ssl/certs/java/cacerts ]] && cp /etc/ssl/certs/java/cacerts "$ROOT/etc/ssl/certs/java/cacerts"
log "cloning $REPO at $COMMIT"
mkdir -p "$ROOT/src"
git clone -q --no-local "$REPO" "$ROOT/src/segvault"
git -C "$ROOT/src/segvault" checkout -q --detach "$COMMIT" || fail "$COMMIT is on no branch or tag of $REPO"
mkdir -p "$ROOT/src/shared"

cat >"$ROOT/src/run.sh" <<'EOF'
#!/bin/bash
# Runs inside the root: the tool installation, then the suite, each timed.
set -uo pipefail
cd /src/segvault
export PATH=/usr/local/go/bin:/root/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 CI=true
echo "go: $(go version); java: $(java -version 2>&1 | head -1); mvn: $(mvn -v 2>/dev/null | head -1)"
t0=$(date +%s)
nice -n "$NICE" make tools packaging-tools
rc=$?
t1=$(date +%s)
echo "fresh-root: tools: exit $rc in $((t1 - t0))s"
((rc == 0)) || exit $rc
nice -n "$NICE" make "$TARGET"
rc=$?
t2=$(date +%s)
echo "fresh-root: make $TARGET: exit $rc in $((t2 - t1))s (tools included: $((t2 - t0))s)"
exit $rc
EOF
chmod 0755 "$ROOT/src/run.sh"

# --- the run -------------------------------------------------------------------------
# systemd-nspawn (not booted): its own /proc, /sys, /dev and PID namespace,
# the host's network; root inside, as on a CI runner. --keep-unit
# --register=no: the host need not run systemd.
log "running CI=true make $TARGET in the root (log: $WORK/run.log)"
set +e
systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --as-pid2 --console=pipe \
	--bind-ro="$SHARED:/src/shared" --setenv=NICE="$NICE" --setenv=TARGET="$TARGET" \
	/src/run.sh 2>&1 | tee "$WORK/run.log"
rc=${PIPESTATUS[0]}
set -e
grep '^fresh-root: ' "$WORK/run.log" || true
log "done: exit $rc ($(git -C "$REPO" log -1 --format='%h %s' "$COMMIT"))"
exit $rc
