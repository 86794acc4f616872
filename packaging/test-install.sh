#!/usr/bin/env bash
# packaging/test-install.sh (`make test-install`, after `make package`):
# installs, runs, upgrades, removes and purges the packages for this machine's
# architecture in throwaway Debian bookworm roots.
#
#   .deb  a booted systemd-nspawn container: the packaged service runs for real
#         (its sandbox, seccomp filter and scheduling applied by systemd)
#         against a live simulated broker and a MinIO server on loopback.
#   .rpm  `rpm --root` into a second root (the scriptlets run chrooted, as in
#         an image build), then the same root booted with systemd-nspawn to
#         run the service from the rpm; upgrade and erase with rpm.
#
# Needs root, Go, and Debian's apt (it installs debootstrap, systemd-container
# and rpm when missing). The bookworm base root is built once with debootstrap
# and cached as .tools/debian-bookworm-rootfs.tar.zst. MinIO: $SEGVAULT_MINIO_BIN
# or .tools/bin/minio (`make tools`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT_DIR=$PWD
GO=${GO:-go}
DIST=${DIST:-dist}
TOOLS=$ROOT_DIR/.tools
ROOTFS=$TOOLS/debian-bookworm-rootfs.tar.zst
MINIO=${SEGVAULT_MINIO_BIN:-$TOOLS/bin/minio}
MIRROR=${DEBIAN_MIRROR:-}
KEEP=${KEEP:-} # KEEP=1 leaves the work dir for inspection

T0=$SECONDS
log() { printf '\n==> [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() {
	printf '\nFAIL: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) == 0 ]] || fail "test-install needs root (debootstrap, systemd-nspawn, dpkg/rpm into a root)"
[[ -s $DIST/PACKAGES ]] || fail "$DIST/PACKAGES is missing: run 'make package' first"
[[ -x $MINIO ]] || fail "MinIO not found at $MINIO: run 'make tools' (or set SEGVAULT_MINIO_BIN)"

ARCH=$(dpkg --print-architecture)
case $ARCH in
amd64) RPMARCH=x86_64 ;;
arm64) RPMARCH=aarch64 ;;
*) fail "unsupported architecture $ARCH" ;;
esac
NEW_DEB=$(grep -m1 -x "segvault_.*_$ARCH\.deb" "$DIST/PACKAGES" || true)
NEW_RPM=$(grep -m1 -x "segvault-.*\.$RPMARCH\.rpm" "$DIST/PACKAGES" || true)
[[ -n $NEW_DEB && -n $NEW_RPM ]] || fail "no $ARCH packages listed in $DIST/PACKAGES"
NEW_DEB=$ROOT_DIR/$DIST/$NEW_DEB
NEW_RPM=$ROOT_DIR/$DIST/$NEW_RPM
NEW_VERSION=$(dpkg-deb -f "$NEW_DEB" Version)

# --- tools -------------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v rpm >/dev/null || need+=(rpm)
command -v zstd >/dev/null || need+=(zstd)
if ((${#need[@]})); then
	log "installing ${need[*]} from Debian"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d /var/tmp/segvault-test-install.XXXXXX)
chmod 0755 "$WORK" # the simulated broker runs as the roots' kafka uid...
install -d -m 0777 "$WORK/b" # ...and writes its results here
MINIO_PID="" BROKER_PID="" NSPAWN_PID="" LEADER=""
cleanup() {
	local rc=$?
	set +e
	[[ -n $BROKER_PID ]] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
	container_stop
	[[ -n $MINIO_PID ]] && kill "$MINIO_PID" 2>/dev/null && wait "$MINIO_PID" 2>/dev/null
	if ((rc != 0)); then
		echo "test-install FAILED after $((SECONDS - T0))s; logs in $WORK (nspawn-*.log, minio.log, journal-*.txt)" >&2
	elif [[ -z $KEEP ]]; then
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT

# --- the base root -------------------------------------------------------------
if [[ ! -s $ROOTFS ]]; then
	if [[ -z $MIRROR ]]; then
		MIRROR=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | sed -n 1p || true)
		MIRROR=${MIRROR:-http://deb.debian.org/debian}
	fi
	log "debootstrap bookworm from $MIRROR (once; cached as $ROOTFS)"
	mkdir -p "$TOOLS"
	nice debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,curl,ca-certificates \
		bookworm "$WORK/bootstrap" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
		fail "debootstrap failed: see $WORK/debootstrap.log"
	rm -rf "$WORK/bootstrap/var/cache/apt/archives/"*.deb "$WORK/bootstrap/var/lib/apt/lists/"*
	tar --zstd -C "$WORK/bootstrap" -cf "$ROOTFS.tmp" . && mv "$ROOTFS.tmp" "$ROOTFS"
	rm -rf "$WORK/bootstrap"
fi

new_root() { # DIR: a fresh bookworm root with a kafka user and a broker config
	mkdir -p "$1"
	tar --zstd -C "$1" -xf "$ROOTFS"
	echo "segvault-test" >"$1/etc/hostname"
	chroot "$1" groupadd --system kafka
	chroot "$1" useradd --system --gid kafka --home-dir /srv/kafka --no-create-home --shell /usr/sbin/nologin kafka
	install -d -m 0750 -o "$(chroot "$1" id -u kafka)" -g "$(chroot "$1" id -g kafka)" "$1/srv/kafka"
	mkdir -p "$1/etc/kafka"
	printf 'process.roles=broker,controller\nnode.id=1\nlog.dirs=/srv/kafka/data\n' >"$1/etc/kafka/server.properties"
}

# --- the container -------------------------------------------------------------
container_start() { # ROOT NAME: boot it; LEADER is its PID 1
	local root=$1 name=$2 i
	# --keep-unit --register=no: no systemd on the host to register with. The
	# host's network is shared: MinIO and the metrics port are on 127.0.0.1.
	systemd-nspawn -D "$root" -M "$name" --register=no --keep-unit -b --console=pipe \
		>"$WORK/nspawn-$name.log" 2>&1 &
	NSPAWN_PID=$!
	for ((i = 0; i < 120; i++)); do
		LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd || true)
		if [[ -n $LEADER ]]; then
			case $(inside systemctl is-system-running 2>/dev/null || true) in
			running | degraded) return 0 ;;
			esac
		fi
		kill -0 "$NSPAWN_PID" 2>/dev/null || fail "systemd-nspawn exited: $(tail -5 "$WORK/nspawn-$name.log")"
		sleep 0.5
	done
	fail "the container did not boot in 60s"
}
container_stop() {
	[[ -n $NSPAWN_PID ]] || return 0
	if [[ -n $LEADER ]]; then
		inside systemctl poweroff >/dev/null 2>&1 || true
	fi
	local i
	for ((i = 0; i < 60; i++)); do
		kill -0 "$NSPAWN_PID" 2>/dev/null || break
		sleep 0.5
	done
	kill "$NSPAWN_PID" 2>/dev/null && sleep 1
	wait "$NSPAWN_PID" 2>/dev/null || true
	NSPAWN_PID="" LEADER=""
}
inside() { # run a command in the booted container
	nsenter -t "$LEADER" -a -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}
journal() { inside journalctl -u segvault.service --no-pager -o cat "$@"; }
mainpid() { inside systemctl show -p MainPID --value segvault.service; }
metric() { # NAME: its value from /metrics (0 when absent)
	inside curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}
metric_nonzero() { [[ $(metric "$1") != 0 ]]; }
prop() { inside systemctl show -p "$1" --value segvault.service; }
wait_for() { # SECONDS DESCRIPTION COMMAND...: retry until it succeeds
	local t=$1 what=$2 i
	shift 2
	for ((i = 0; i < t * 2; i++)); do
		if "$@" >"$WORK/wait.out" 2>&1; then return 0; fi
		sleep 0.5
	done
	cat "$WORK/wait.out" >&2
	fail "timed out after ${t}s waiting for: $what"
}
expect_eq() { # WANT GOT WHAT
	[[ $1 == "$2" ]] || fail "$3: want '$1', got '$2'"
	ok "$3: $2"
}
stat_of() { stat -c '%a %U %G' "$1"; } # mode owner group, names resolved on the host...
stat_in() { chroot "$1" stat -c '%a %U %G' "$2"; } # ...or in the root

# --- helpers on the host ---------------------------------------------------------
log "building the test helper, the host segvault and the previous-version packages"
"$GO" build -o "$WORK/pkgtest" ./packaging/internal/pkgtest
mkdir -p "$WORK/newdeb"
dpkg-deb -x "$NEW_DEB" "$WORK/newdeb"
SV=$WORK/newdeb/usr/bin/segvault
"$SV" --version
# The "previous release" the upgrades start from: the same tree under a version
# that sorts before every real one.
OLD_VERSION="0.0.0~~old"
ARCHES=$ARCH DIST="$WORK/old" SEGVAULT_PKG_VERSION=$OLD_VERSION NFPM=${NFPM:-$TOOLS/bin/nfpm} GO=$GO \
	bash packaging/build.sh >"$WORK/build-old.log" 2>&1 || fail "building the old packages: $(tail -5 "$WORK/build-old.log")"
OLD_DEB=$WORK/old/segvault_${OLD_VERSION}_$ARCH.deb
OLD_RPM=$WORK/old/segvault-${OLD_VERSION}.$RPMARCH.rpm
dpkg --compare-versions "$NEW_VERSION" gt "${OLD_VERSION}-1" || fail "$NEW_VERSION does not sort after ${OLD_VERSION}-1"

log "MinIO on loopback"
ACCESS=segvault-test SECRET=segvault-test-secret-$RANDOM$RANDOM
S3PORT=$("$WORK/pkgtest" freeport)
CONSOLEPORT=$("$WORK/pkgtest" freeport)
mkdir -p "$WORK/minio"
MINIO_ROOT_USER=$ACCESS MINIO_ROOT_PASSWORD=$SECRET MINIO_BROWSER=off \
	"$MINIO" server --quiet --address "127.0.0.1:$S3PORT" --console-address "127.0.0.1:$CONSOLEPORT" "$WORK/minio" \
	>"$WORK/minio.log" 2>&1 &
MINIO_PID=$!
wait_for 60 "MinIO to start" curl -fsS "http://127.0.0.1:$S3PORT/minio/health/live"
"$WORK/pkgtest" mkbucket -endpoint "127.0.0.1:$S3PORT" -bucket segvault-deb -access-key "$ACCESS" -secret-key "$SECRET"
"$WORK/pkgtest" mkbucket -endpoint "127.0.0.1:$S3PORT" -bucket segvault-rpm -access-key "$ACCESS" -secret-key "$SECRET"
ok "MinIO on 127.0.0.1:$S3PORT, buckets segvault-deb and segvault-rpm"

store_flags() { # BUCKET: flags for the host's segvault against MinIO
	echo --bucket "s3://$1" --s3-endpoint "127.0.0.1:$S3PORT" --s3-insecure --s3-path-style \
		--s3-access-key "$ACCESS" --s3-secret-key "$SECRET"
}
archived_all() { # BUCKET RESULT: every rolled segment of the broker is in the archive
	# shellcheck disable=SC2046
	"$SV" restore --dry-run --json --target "$WORK/restore-target" $(store_flags "$1") >"$WORK/plan.json" 2>"$WORK/plan.err" &&
		"$WORK/pkgtest" check -result "$2" -plan "$WORK/plan.json"
}

configure() { # ROOT BUCKET: point the packaged config at MinIO, secrets in the environment file
	local root=$1 bucket=$2 envfile
	envfile=$root/etc/default/segvault
	[[ -f $envfile ]] || envfile=$root/etc/sysconfig/segvault
	sed -i -e "s|^bucket: \"\"|bucket: s3://$bucket|" \
		-e "s|^listen: 127.0.0.1:9464|listen: 127.0.0.1:$MPORT|" "$root/etc/segvault/segvault.yaml"
	cat >>"$root/etc/segvault/segvault.yaml" <<EOF

# edited by test-install
s3-endpoint: 127.0.0.1:$S3PORT
s3-insecure: true
s3-path-style: true
s3-access-key: $ACCESS
settle-time: 1s
scan-interval: 5s
EOF
	printf 'SEGVAULT_S3_SECRET_KEY=%s\nSEGVAULT_LOG_LEVEL=debug\n' "$SECRET" >>"$envfile"
}

# =============================================================================
log "deb: fresh bookworm root, booted with systemd-nspawn"
DEBROOT=$WORK/deb-root
new_root "$DEBROOT"
KUID=$(chroot "$DEBROOT" id -u kafka)
KGID=$(chroot "$DEBROOT" id -g kafka)
MPORT=$("$WORK/pkgtest" freeport)
cp "$OLD_DEB" "$DEBROOT/var/tmp/old.deb"
cp "$NEW_DEB" "$DEBROOT/var/tmp/new.deb"
container_start "$DEBROOT" segvault-deb
ok "booted: $(inside systemctl is-system-running || true)"

log "deb: install $OLD_VERSION"
inside dpkg -i /var/tmp/old.deb
out=$(inside systemd-analyze verify --man=no segvault.service 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify: $out"
ok "systemd-analyze verify segvault.service (installed): clean"
expect_eq enabled "$(inside systemctl is-enabled segvault.service)" "enabled on first install"
expect_eq inactive "$(inside systemctl is-active segvault.service || true)" "not started before it is configured"
inside id -nG segvault | tr ' ' '\n' | grep -qx kafka || fail "segvault is not in group kafka"
ok "user segvault, member of kafka: $(inside id segvault)"
expect_eq "640 root segvault" "$(stat_in "$DEBROOT" /etc/segvault/segvault.yaml)" "/etc/segvault/segvault.yaml"
expect_eq "640 root segvault" "$(stat_in "$DEBROOT" /etc/default/segvault)" "/etc/default/segvault"
expect_eq "750 segvault segvault" "$(stat_in "$DEBROOT" /var/lib/segvault)" "/var/lib/segvault"
expect_eq "755 root root" "$(stat_in "$DEBROOT" /usr/bin/segvault)" "/usr/bin/segvault"
for f in /usr/share/man/man1/segvault.1.gz /usr/share/bash-completion/completions/segvault \
	/usr/share/zsh/vendor-completions/_segvault /usr/share/doc/segvault/copyright /usr/share/doc/segvault/OPERATIONS.md; do
	[[ -f $DEBROOT$f ]] || fail "$f is missing"
done
ok "man page, completions and docs installed"

rc=0
inside runuser -u segvault -- segvault config check --config /etc/segvault/segvault.yaml >"$WORK/check0.txt" 2>&1 || rc=$?
expect_eq 2 "$rc" "config check of the default config (bucket not set)"
grep -q "bucket" "$WORK/check0.txt" || fail "config check does not name the bucket: $(cat "$WORK/check0.txt")"
inside systemctl start segvault.service || true
sleep 12 # longer than RestartSec: an unconfigured agent must not be restarted
expect_eq "failed 0 2" "$(prop ActiveState) $(prop NRestarts) $(prop ExecMainStatus)" \
	"unconfigured start: state, restarts, exit status"
inside systemctl reset-failed segvault.service

log "deb: configure for MinIO, start against a live simulated broker"
configure "$DEBROOT" segvault-deb
# As the service sees it: user segvault, the environment file loaded.
inside runuser -u segvault -- sh -c 'set -a; . /etc/default/segvault; set +a; exec segvault config check --config /etc/segvault/segvault.yaml' \
	>"$WORK/check1.txt" 2>&1 || fail "config check: $(cat "$WORK/check1.txt")"
grep -q "s3-secret-key: <redacted>" "$WORK/check1.txt" || fail "the secret from the environment file is not redacted"
! grep -q "$SECRET" "$WORK/check1.txt" || fail "config check printed the secret"
ok "config check as user segvault: OK, secret from the environment, redacted"
# The broker: files owned by kafka and writable by its group, as Kafka makes
# them under UMask=0007. Without group write the kernel lets segvault neither
# see page-cache residency (mincore) nor hard-link the files
# (fs.protected_hardlinks): see OPERATIONS.md.
"$WORK/pkgtest" broker -dir "$DEBROOT/srv/kafka/data" -seconds 40 -uid "$KUID" -gid "$KGID" -umask 007 -group-write \
	-ready "$WORK/b/broker.ready" -result "$WORK/b/broker.json" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
broker_ready() {
	[[ -f $WORK/b/broker.ready ]] && return 0
	kill -0 "$BROKER_PID" 2>/dev/null || fail "the broker exited: $(tail -5 "$WORK/broker.log")"
	return 1
}
wait_for 60 "the broker's initial data" broker_ready
# Evict the initial segments from the page cache (written back first), so the
# agent reads pages that were not resident and must drop them again: that
# proves mincore and fadvise work under the filter.
find "$DEBROOT/srv/kafka/data" -name '*.log' -exec sync {} +
find "$DEBROOT/srv/kafka/data" -name '*.log' -exec dd iflag=nocache count=0 status=none if={} \;
inside systemctl start segvault.service
wait_for 30 "segvault to be active" inside systemctl is-active --quiet segvault.service
wait_for 60 "/readyz" inside curl -fsS "http://127.0.0.1:$MPORT/readyz"
PID1=$(mainpid)
ok "active, ready (main PID $PID1)"

log "deb: the sandbox and the agent's own system calls"
read -r nice sched < <(inside ps -o ni=,cls= -p "$PID1")
expect_eq "10 B" "$nice $sched" "nice and scheduling policy (SCHED_BATCH)"
expect_eq "idle" "$(inside ionice -p "$PID1" | cut -d: -f1)" "I/O scheduling class"
st=$(inside cat "/proc/$PID1/status")
expect_eq "2" "$(awk '/^Seccomp:/ {print $2}' <<<"$st")" "seccomp filter"
expect_eq "1" "$(awk '/^NoNewPrivs:/ {print $2}' <<<"$st")" "NoNewPrivs"
expect_eq "0000000000000000" "$(awk '/^CapEff:/ {print $2}' <<<"$st")" "effective capabilities"
expect_eq "0000000000000000" "$(awk '/^CapBnd:/ {print $2}' <<<"$st")" "capability bounding set"
expect_eq ro "$(inside nsenter -t "$PID1" -m -- findmnt -no OPTIONS --target /srv/kafka/data | cut -d, -f1)" \
	"the Kafka log dir's mount in the service's sandbox"
wait_for 60 "segments archived" metric_nonzero segvault_agent_segments_archived_total
wait_for 30 "page-cache pages dropped (mincore + fadvise)" metric_nonzero segvault_agent_page_cache_pages_dropped_total
ok "mincore + fadvise: $(metric segvault_agent_page_cache_pages_dropped_total) pages dropped"
watches=$(metric segvault_agent_inotify_watches)
[[ $watches != 0 && $(metric segvault_agent_polling_fallback) == 0 ]] || fail "inotify: $watches watches, polling fallback $(metric segvault_agent_polling_fallback)"
ok "inotify: $watches watches, no polling fallback"
journal >"$WORK/journal-deb-1.txt"
grep -q "could not lower CPU/I/O priority" "$WORK/journal-deb-1.txt" && fail "setpriority/ioprio_set failed under the filter"
ok "setpriority and ioprio_set allowed (no 'could not lower' warning)"
grep -qi "bad system call\|SIGSYS" "$WORK/journal-deb-1.txt" && fail "a system call was killed by the filter"
unprotected=$(grep -c "segment not protected from retention" "$WORK/journal-deb-1.txt" || true)
((unprotected > 0)) || fail "expected 'not protected' warnings with the default state dir (separate mount in the sandbox)"
ok "default state dir: staging off as documented ($unprotected 'segment not protected from retention' warnings)"
grep -m1 "segment not protected" "$WORK/journal-deb-1.txt" | sed 's/^/    /'

log "deb: upgrade to $NEW_VERSION while the agent runs"
inside dpkg -i --force-confold /var/tmp/new.deb
expect_eq "$NEW_VERSION" "$(inside dpkg-query -W -f '${Version}' segvault)" "installed version"
grep -q "^# edited by test-install" "$DEBROOT/etc/segvault/segvault.yaml" || fail "the edited config was not kept"
grep -q "^SEGVAULT_S3_SECRET_KEY=" "$DEBROOT/etc/default/segvault" || fail "the edited environment file was not kept"
[[ ! -e $DEBROOT/etc/segvault/segvault.yaml.dpkg-dist && ! -e $DEBROOT/etc/segvault/segvault.yaml.dpkg-new ]] ||
	fail "dpkg left a new copy of the config"
ok "edited segvault.yaml and /etc/default/segvault kept"
wait_for 30 "segvault active after the upgrade" inside systemctl is-active --quiet segvault.service
PID2=$(mainpid)
[[ $PID2 != "$PID1" ]] || fail "the agent was not restarted by the upgrade"
ok "restarted by the upgrade (main PID $PID1 -> $PID2)"
inside systemctl reload segvault.service
sleep 1
expect_eq "active $PID2" "$(inside systemctl is-active segvault.service) $(mainpid)" "reload (SIGHUP): same process"

log "deb: state dir on the log dirs' file system with a ReadWritePaths= drop-in (staging protection)"
inside install -d -o segvault -g segvault -m 0750 /srv/kafka/segvault-state
mkdir -p "$DEBROOT/etc/systemd/system/segvault.service.d"
printf '[Service]\nReadWritePaths=/srv/kafka\n' >"$DEBROOT/etc/systemd/system/segvault.service.d/state-dir.conf"
sed -i 's|^state-dir: /var/lib/segvault|state-dir: /srv/kafka/segvault-state|' "$DEBROOT/etc/segvault/segvault.yaml"
inside systemctl daemon-reload
inside systemctl restart segvault.service
wait_for 30 "segvault active with the drop-in" inside systemctl is-active --quiet segvault.service
PID3=$(mainpid)
log "deb: waiting for the broker to finish, then for every rolled segment to be archived"
wait "$BROKER_PID" || fail "the broker failed: $(tail -5 "$WORK/broker.log")"
BROKER_PID=""
cat "$WORK/broker.log"
wait_for 120 "every rolled segment in the archive" archived_all segvault-deb "$WORK/b/broker.json"
cat "$WORK/wait.out"
inside journalctl "_PID=$PID3" --no-pager -o cat >"$WORK/journal-deb-2.txt"
if grep -q "segment not protected from retention" "$WORK/journal-deb-2.txt"; then
	grep -m3 "segment not protected" "$WORK/journal-deb-2.txt" >&2 || true
	fail "staging still off with the state dir on the log dirs' mount"
fi
[[ -d $DEBROOT/srv/kafka/segvault-state/staging ]] || fail "no staging dir under the new state dir"
ok "staging on: no 'not protected' warning since the drop-in ($(grep -c "" "$WORK/journal-deb-2.txt") journal lines)"
# shellcheck disable=SC2046
"$SV" verify --scrub $(store_flags segvault-deb) >"$WORK/scrub.txt" 2>&1 || fail "scrub: $(tail -5 "$WORK/scrub.txt")"
ok "segvault verify --scrub: $(tail -1 "$WORK/scrub.txt")"

log "deb: stop (SIGTERM drains) and remove"
inside systemctl stop segvault.service
expect_eq "inactive success" "$(prop ActiveState) $(prop Result)" "stopped cleanly"
inside systemctl start segvault.service
inside dpkg -r segvault
expect_eq inactive "$(inside systemctl is-active segvault.service || true)" "service stopped by removal"
[[ ! -e $DEBROOT/usr/bin/segvault ]] || fail "binary still there after remove"
[[ -f $DEBROOT/etc/segvault/segvault.yaml && -d $DEBROOT/var/lib/segvault ]] || fail "remove dropped config or state"
inside getent passwd segvault >/dev/null || fail "remove dropped the user"
ok "removed: binary gone; config, state dir and user kept"

log "deb: purge"
inside dpkg -P segvault
for f in /etc/segvault /etc/default/segvault /var/lib/segvault /etc/systemd/system/multi-user.target.wants/segvault.service; do
	[[ ! -e $DEBROOT$f && ! -L $DEBROOT$f ]] || fail "$f still there after purge"
done
! inside getent passwd segvault >/dev/null || fail "user segvault still there after purge"
! inside getent group segvault >/dev/null || fail "group segvault still there after purge"
ok "purged: config, environment file, state dir, enablement, user and group gone"
container_stop

# =============================================================================
log "rpm: rpm --root into a fresh bookworm root (scriptlets chrooted, no systemd running)"
RPMROOT=$WORK/rpm-root
new_root "$RPMROOT"
KUID=$(chroot "$RPMROOT" id -u kafka)
KGID=$(chroot "$RPMROOT" id -g kafka)
MPORT=$("$WORK/pkgtest" freeport)
rpmr() { rpm --root "$RPMROOT" --dbpath /var/lib/rpm "$@"; }
rpmr --initdb
rpmr -ivh --nosignature "$OLD_RPM"
expect_eq "segvault-${OLD_VERSION}-1.$RPMARCH" "$(rpmr -q segvault)" "installed"
chroot "$RPMROOT" id -nG segvault | tr ' ' '\n' | grep -qx kafka || fail "segvault is not in group kafka"
expect_eq "640 root segvault" "$(stat_in "$RPMROOT" /etc/segvault/segvault.yaml)" "/etc/segvault/segvault.yaml"
expect_eq "640 root segvault" "$(stat_in "$RPMROOT" /etc/sysconfig/segvault)" "/etc/sysconfig/segvault"
expect_eq "750 segvault segvault" "$(stat_in "$RPMROOT" /var/lib/segvault)" "/var/lib/segvault"
[[ -L $RPMROOT/etc/systemd/system/multi-user.target.wants/segvault.service ]] || fail "not enabled by %post"
ok "enabled offline by %post"
out=$(rpmr -V segvault || true)
[[ -z $out ]] || fail "rpm -V: $out"
ok "rpm -V clean"
configure "$RPMROOT" segvault-rpm
rpmr -Uvh --nosignature "$NEW_RPM"
expect_eq "$(rpm -qp --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}' "$NEW_RPM")" "$(rpmr -q segvault)" "upgraded"
grep -q "^# edited by test-install" "$RPMROOT/etc/segvault/segvault.yaml" || fail "the edited config was not kept"
[[ ! -e $RPMROOT/etc/segvault/segvault.yaml.rpmnew ]] || fail "rpm wrote segvault.yaml.rpmnew"
ok "edited segvault.yaml kept"

log "rpm: boot the root and run the service the rpm installed"
"$WORK/pkgtest" broker -dir "$RPMROOT/srv/kafka/data" -seconds 0 -uid "$KUID" -gid "$KGID" -umask 027 \
	-result "$WORK/b/broker-rpm.json" >"$WORK/broker-rpm.log" 2>&1 || fail "broker: $(cat "$WORK/broker-rpm.log")"
container_start "$RPMROOT" segvault-rpm
expect_eq enabled "$(inside systemctl is-enabled segvault.service)" "enabled"
inside systemctl start segvault.service
wait_for 30 "segvault active" inside systemctl is-active --quiet segvault.service
wait_for 120 "every rolled segment in the archive" archived_all segvault-rpm "$WORK/b/broker-rpm.json"
cat "$WORK/wait.out"
journal >"$WORK/journal-rpm.txt"
inside systemctl stop segvault.service
expect_eq "inactive success" "$(prop ActiveState) $(prop Result)" "stopped cleanly"
container_stop

log "rpm: erase"
rpmr -e segvault
[[ ! -e $RPMROOT/usr/bin/segvault && ! -e $RPMROOT/usr/lib/systemd/system/segvault.service ]] || fail "files left after erase"
[[ ! -L $RPMROOT/etc/systemd/system/multi-user.target.wants/segvault.service ]] || fail "still enabled after erase"
[[ -f $RPMROOT/etc/segvault/segvault.yaml.rpmsave ]] || fail "the edited config was not saved as .rpmsave"
[[ -d $RPMROOT/var/lib/segvault ]] || fail "erase dropped the state dir"
chroot "$RPMROOT" getent passwd segvault >/dev/null || fail "erase dropped the user"
ok "erased: files and enablement gone; config saved as .rpmsave; state dir and user kept"

log "PASS: deb ($OLD_VERSION -> $NEW_VERSION in a booted nspawn container) and rpm (rpm --root, booted); $((SECONDS - T0))s"
