#!/usr/bin/env bash
# Runs one container from an image with a freshly built knast, offline: an OCI image is made from
# busybox-static, loaded into a private image store and run with `knast run --image`; then a plain
# runc-style bundle is run too. Everything lives in a temp dir that is removed afterwards.
# Usage: scripts/quickstart.sh [path/to/knast]   (run as root; `make quickstart` does this)
set -euo pipefail

cd "$(dirname "$0")/.."
knast=$(realpath "${1:-bin/knast}")
go=${GO:-go}

if [ "$(id -u)" != 0 ]; then
	echo "quickstart: needs root to create namespaces: sudo make quickstart" >&2
	exit 1
fi
[ -x "$knast" ] || { echo "quickstart: $knast not found: run make build" >&2; exit 1; }

# A dynamically linked busybox would not run in a rootfs without libc: insist on busybox-static.
if command -v dpkg-query >/dev/null && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
	echo "quickstart: installing busybox-static (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q busybox-static >/dev/null || { apt-get update -q && apt-get install -y -q busybox-static >/dev/null; }
fi
[ -x /usr/bin/busybox ] || { echo "quickstart: /usr/bin/busybox missing: install busybox-static" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/knast-quickstart.XXXXXX")
id=quickstart-$$
state=$work/state
bundle=$work/bundle
cleanup() {
	"$knast" --root "$state" delete --force "$id" >/dev/null 2>&1 || true
	"$knast" --root "$state" delete --force "$id-img" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# show prints a command the way one would type it, then runs it.
show() {
	local out=+ a
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./=:@%+-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
	done
	printf '%s\n' "$out"
	"$@"
}

echo "== rootfs: busybox-static in $bundle/rootfs"
mkdir -p "$bundle/rootfs"/{bin,proc,sys,dev,tmp,etc,root}
cp /usr/bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/usr/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$bundle/rootfs/etc/passwd"
echo 'root:x:0:' >"$bundle/rootfs/etc/group"

echo "== image: an OCI archive of that rootfs, loaded into a private store ($work/storage)"
show "$go" run ./scripts/mkimage -name localhost/busybox:latest "$bundle/rootfs" "$work/busybox.tar"
show "$knast" --storage "$work/storage" image load -i "$work/busybox.tar"
show "$knast" --storage "$work/storage" images

echo "== run --image"
show "$knast" --root "$state" --storage "$work/storage" run --rm --name "$id-img" --image localhost/busybox:latest -- \
	sh -c 'echo hello from a knast container made from an image; id; hostname' </dev/null

echo "== config.json: knast spec, then terminal=false and our command"
(cd "$bundle" && show "$knast" spec)
show "$go" run ./scripts/specedit -terminal=false "$bundle" sh -c 'echo hello from knast; uname -a; id'

echo "== run (a runc-style bundle)"
show "$knast" --root "$state" run --bundle "$bundle" "$id" </dev/null
echo "== done: exit status 0; cleaning up $work"
