#!/usr/bin/env bash
# Build dist/keter_VERSION_ARCH.deb with dpkg-buildpackage (see
# debian/README.source), then run lintian on it.
#   DEB_LINTIAN=0 skips lintian; DEB_LINTIAN_FAIL_ON (default "error") is
#   passed to lintian --fail-on.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
for tool in go dpkg-buildpackage dh fakeroot; do
	command -v "$tool" >/dev/null || { echo "deb.sh: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

# The one online step: fill the module cache, then build offline from it.
go mod download
GOMODCACHE=$(go env GOMODCACHE)
GOCACHE=$(go env GOCACHE)
export GOMODCACHE GOCACHE

# dpkg-buildpackage writes into the parent of the source tree and leaves
# debian/keter/ etc. behind: build in a private copy instead of the shared
# working tree.
work=$(mktemp -d "${TMPDIR:-/tmp}/keter-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/keter"
tar -C "$root" --exclude=./.git --exclude=./bin --exclude=./dist \
	--exclude=./debian/keter --exclude=./debian/.debhelper -cf - . |
	tar -C "$work/keter" -xf -

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
# A failed build must not leave an older .deb behind for the next step.
mkdir -p dist
rm -f dist/keter_"$version"_"$arch".*

(cd "$work/keter" && dpkg-buildpackage -us -uc -b)

mv "$work"/keter_"$version"_"$arch".deb "$work"/keter_"$version"_"$arch".buildinfo \
	"$work"/keter_"$version"_"$arch".changes dist/
# dbgsym: there is none (the binary is built with -s -w) but keep whatever came.
mv "$work"/*.ddeb dist/ 2>/dev/null || true
echo "deb.sh: built dist/keter_${version}_${arch}.deb"

if [ "${DEB_LINTIAN:-1}" != 0 ]; then
	command -v lintian >/dev/null || { echo "deb.sh: lintian is missing" >&2; exit 1; }
	# Not --show-overrides: it makes overridden tags count for --fail-on.
	lintian --fail-on "${DEB_LINTIAN_FAIL_ON:-error}" --display-info \
		dist/keter_"$version"_"$arch".changes
fi
