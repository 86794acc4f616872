#!/usr/bin/env bash
# Builds the segvault packages into dist/:
#   dist/segvault_<version>_<amd64|arm64>.deb
#   dist/segvault-<version>.<x86_64|aarch64>.rpm
# and lists them, one file name a line, in dist/PACKAGES.
#
# Environment (all optional; `make package` sets the first three):
#   VERSION   raw version, usually `git describe --tags --always --dirty` with
#             the leading v removed; normalised here into a valid deb/rpm version
#   NFPM, GO  the tools (default: nfpm and go from PATH)
#   ARCHES    Go architectures to build (default: "amd64 arm64")
#   DIST      output directory (default: dist)
#   SEGVAULT_PKG_VERSION  the package version as is (no normalisation; tests)
#   SEGVAULT_MAINTAINER, SEGVAULT_LICENSE  package metadata overrides
#   SEGVAULT_SIGNING_KEY  armored PGP secret key file: sign both packages
#             (passphrase in NFPM_PASSPHRASE); unset: unsigned
#   SOURCE_DATE_EPOCH  timestamp of every packaged file (default: the commit's)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
NFPM=${NFPM:-nfpm}
ARCHES=${ARCHES:-amd64 arm64}
DIST=${DIST:-dist}

# pkg_version RAW: a version that dpkg and rpm both accept and order sensibly.
#   1.2.3                 -> 1.2.3
#   1.2.3-rc1             -> 1.2.3~rc1               (before 1.2.3)
#   1.2.3-4-gabc1234      -> 1.2.3+git4.abc1234      (after 1.2.3)
#   1.2.3-rc1-4-gabc1234  -> 1.2.3~rc1+git4.abc1234
#   abc1234 (no tag)      -> 0.0.0~gitabc1234
#   any of them -dirty    -> ...+dirty (or .dirty after a +)
#   anything else         -> 0.0.0~<its letters, digits and dots>
pkg_version() {
	local raw=${1#v} v dirty=""
	if [[ $raw == *-dirty ]]; then
		dirty=1
		raw=${raw%-dirty}
	fi
	if [[ $raw =~ ^[0-9a-f]{7,40}$ ]] && git rev-parse -q --verify "$raw^{commit}" >/dev/null 2>&1; then
		v="0.0.0~git$raw" # an untagged commit (even one whose abbreviation is all digits)
	elif [[ $raw =~ ^([0-9]+(\.[0-9]+)*)(-([0-9A-Za-z.]+))?(-([0-9]+)-g([0-9a-f]+))?$ ]]; then
		v=${BASH_REMATCH[1]}
		[[ -n ${BASH_REMATCH[4]} ]] && v+="~${BASH_REMATCH[4]}"
		[[ -n ${BASH_REMATCH[6]} ]] && v+="+git${BASH_REMATCH[6]}.${BASH_REMATCH[7]}"
	elif [[ $raw =~ ^[0-9a-f]{4,40}$ ]]; then
		v="0.0.0~git$raw"
	else
		v="0.0.0~$(printf '%s' "$raw" | tr -c 'A-Za-z0-9.' '.' | sed 's/\.\.*/./g; s/^\.//; s/\.$//')"
		[[ $v == "0.0.0~" ]] && v="0.0.0~dev"
	fi
	if [[ -n $dirty ]]; then
		if [[ $v == *+* ]]; then v+=".dirty"; else v+="+dirty"; fi
	fi
	printf '%s\n' "$v"
}

if [[ ${1:-} == --print-version ]]; then
	pkg_version "${2:-${VERSION:-}}"
	exit 0
fi

RAW=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)}
PKGVER=${SEGVAULT_PKG_VERSION:-$(pkg_version "$RAW")}
if ! [[ $PKGVER =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
	echo "build.sh: cannot make a package version out of $RAW ($PKGVER)" >&2
	exit 2
fi

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SEGVAULT_VERSION=$PKGVER
export SEGVAULT_MAINTAINER=${SEGVAULT_MAINTAINER:-segvault maintainers <segvault@users.noreply.github.com>}
export SEGVAULT_LICENSE=${SEGVAULT_LICENSE:-LicenseRef-segvault}
export SEGVAULT_SIGNING_KEY=${SEGVAULT_SIGNING_KEY:-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$DIST"

echo "segvault $PKGVER (from $RAW): building for ${ARCHES}"

build() { # build GOARCH OUT
	CGO_ENABLED=0 GOOS=linux GOARCH=$1 "$GO" build -trimpath \
		-ldflags "-s -w -X main.version=$PKGVER" -o "$2" ./cmd/segvault
}

# Arch-independent files, generated from the CLI by a binary for this host.
common=$work/common
mkdir -p "$common"
build "$("$GO" env GOHOSTARCH)" "$common/segvault-host"
"$common/segvault-host" gen-man >"$common/segvault.1"
gzip -9n <"$common/segvault.1" >"$common/segvault.1.gz"
"$common/segvault-host" completion bash >"$common/segvault.bash"
"$common/segvault-host" completion zsh >"$common/_segvault"
if [[ $("$common/segvault-host" --version) != "segvault version $PKGVER" ]]; then
	echo "build.sh: the binary reports $("$common/segvault-host" --version), want $PKGVER" >&2
	exit 1
fi

# Debian changelog (one entry for this build).
{
	printf 'segvault (%s-1) unstable; urgency=medium\n\n' "$PKGVER"
	printf '  * Built from %s (%s).\n\n' "$RAW" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	printf ' -- %s  %s\n' "$SEGVAULT_MAINTAINER" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$common/changelog.Debian.gz"

# copyright: segvault's notice, then every Go module linked into the binary
# with its license (the binary is static: their code ships inside it). The
# .deb refers to /usr/share/common-licenses/Apache-2.0 instead of repeating
# that text (Debian policy 12.5); the .rpm carries every text in full.
copyright() { # GOARCH deb|rpm
	local arch=$1 mode=$2
	cat <<EOF
segvault

Copyright: the segvault authors
Source: https://github.com/segvault/segvault
License: $SEGVAULT_LICENSE

The segvault binary is statically linked. It contains code from the Go
standard library and the Go modules below; each one's license follows.
EOF
	printf '\n==============================================================================\n'
	printf 'Go standard library (%s)\n\n' "$("$GO" env GOVERSION)"
	cat "$("$GO" env GOROOT)/LICENSE"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" list -deps \
		-f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/segvault |
		sort -u | while read -r path ver dir; do
			printf '\n==============================================================================\n'
			printf '%s %s\n\n' "$path" "$ver"
			local found=""
			for f in "$dir"/LICENSE* "$dir"/LICENCE* "$dir"/COPYING* "$dir"/NOTICE*; do
				[[ -f $f ]] || continue
				if [[ $mode == deb ]] && grep -q 'TERMS AND CONDITIONS FOR USE, REPRODUCTION' "$f"; then
					awk '/^[ \t]*Apache License[ \t]*$/ { exit } { print }' "$f"
					printf 'Apache License, Version 2.0: see /usr/share/common-licenses/Apache-2.0\n'
				else
					cat "$f"
				fi
				printf '\n'
				found=1
			done
			[[ -n $found ]] || printf '(no license file in the module; see %s)\n' "$path"
		done
}

# nfpm expands ${SEGVAULT_*} in most fields, not in the license: render it here.
sed "s|@SEGVAULT_LICENSE@|${SEGVAULT_LICENSE//|/\\|}|" packaging/nfpm.yaml >"$work/nfpm.yaml"

rm -f "$DIST/PACKAGES"
for arch in $ARCHES; do
	case $arch in
	amd64) rpmarch=x86_64 ;;
	arm64) rpmarch=aarch64 ;;
	*)
		echo "build.sh: unsupported architecture $arch" >&2
		exit 2
		;;
	esac
	stage=$work/$arch
	mkdir -p "$stage"
	build "$arch" "$stage/segvault"
	cp "$common"/{segvault.1.gz,segvault.bash,_segvault,changelog.Debian.gz} "$stage/"
	copyright "$arch" deb >"$stage/copyright.deb"
	copyright "$arch" rpm >"$stage/copyright.rpm"

	deb=segvault_${PKGVER}_${arch}.deb
	rpm=segvault-${PKGVER}.${rpmarch}.rpm
	rm -f "$DIST"/segvault_*_"$arch".deb "$DIST"/segvault-*."$rpmarch".rpm # earlier builds
	SEGVAULT_ARCH=$arch SEGVAULT_STAGE=$stage "$NFPM" package --config "$work/nfpm.yaml" \
		--packager deb --target "$DIST/$deb" >"$work/nfpm.log" 2>&1 ||
		{ cat "$work/nfpm.log" >&2; exit 1; }
	SEGVAULT_ARCH=$arch SEGVAULT_STAGE=$stage "$NFPM" package --config "$work/nfpm.yaml" \
		--packager rpm --target "$DIST/$rpm" >"$work/nfpm.log" 2>&1 ||
		{ cat "$work/nfpm.log" >&2; exit 1; }
	printf '%s\n%s\n' "$deb" "$rpm" >>"$DIST/PACKAGES"
	echo "  $DIST/$deb"
	echo "  $DIST/$rpm"
done
