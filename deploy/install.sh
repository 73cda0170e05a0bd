#!/bin/sh
# install.sh: put knast where containerd's CRI plugin finds it.
#
#   PREFIX/bin/knast              the runtime (BinaryName of the "knast" runtime handler)
#   CNI_BIN_DIR/knast-cni         a symlink to it: knast acts as the CNI plugin under that name
#   CNI_BIN_DIR/loopback          a link to the standard loopback plugin when the dir has none:
#                                 containerd's CRI brings up each pod's lo through it
#   CNI_CONF_DIR/10-knast.conflist  the pod network (kept if it exists, unless --force-conf)
#
# It builds cmd/knast from this checkout unless --binary names a built one. Running it again is
# safe: files are replaced atomically and an existing conflist is left alone. It does not edit
# containerd's config: merge deploy/containerd/config.toml (containerd 1.x) or config-v3.toml
# (containerd 2.x) and restart containerd, then `kubectl apply -f deploy/containerd/runtimeclass.yaml`.
set -eu

usage() {
	cat <<USAGE
usage: $0 [--prefix DIR] [--cni-bin-dir DIR] [--cni-conf-dir DIR] [--binary FILE]
          [--loopback FILE] [--no-conf] [--force-conf] [--destdir DIR]
  --prefix DIR        install knast into DIR/bin (default /usr/local)
  --cni-bin-dir DIR   where the knast-cni link goes (default /opt/cni/bin)
  --cni-conf-dir DIR  where 10-knast.conflist goes (default /etc/cni/net.d)
  --binary FILE       install this knast binary instead of building one
  --loopback FILE     the loopback CNI plugin to link when CNI_BIN_DIR has none
                      (default: Debian's containernetworking-plugins, /usr/lib/cni/loopback)
  --no-conf           do not install the conflist
  --force-conf        replace an existing conflist
  --destdir DIR       stage everything under DIR (packaging); links still point at PREFIX/bin/knast
USAGE
}

prefix=/usr/local
cni_bin=/opt/cni/bin
cni_conf=/etc/cni/net.d
binary=
loopback=
conf=yes
force_conf=no
destdir=

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
	--cni-bin-dir) cni_bin=${2:?--cni-bin-dir needs a directory}; shift 2 ;;
	--cni-conf-dir) cni_conf=${2:?--cni-conf-dir needs a directory}; shift 2 ;;
	--binary) binary=${2:?--binary needs a file}; shift 2 ;;
	--loopback) loopback=${2:?--loopback needs a file}; shift 2 ;;
	--destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
	--no-conf) conf=no; shift ;;
	--force-conf) force_conf=yes; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "$binary" ]; then
	command -v go >/dev/null 2>&1 || { echo "install.sh: go is needed to build knast (or pass --binary)" >&2; exit 1; }
	echo "building knast from $repo"
	(cd "$repo" && go build -o "$tmp/knast" ./cmd/knast)
	binary=$tmp/knast
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }

bindir=$prefix/bin
mkdir -p "$destdir$bindir" "$destdir$cni_bin"
# Copy next to the target and rename, so a running containerd never sees a half-written binary.
cp "$binary" "$destdir$bindir/.knast.new"
chmod 0755 "$destdir$bindir/.knast.new"
mv -f "$destdir$bindir/.knast.new" "$destdir$bindir/knast"
echo "installed $destdir$bindir/knast"

# The plugin is the same binary: knast dispatches on the name it was started as.
ln -sfn "$bindir/knast" "$destdir$cni_bin/.knast-cni.new"
mv -fT "$destdir$cni_bin/.knast-cni.new" "$destdir$cni_bin/knast-cni"
echo "linked $destdir$cni_bin/knast-cni -> $bindir/knast"

# containerd's CRI runs the "loopback" plugin before the pod's network in every sandbox.
if [ ! -e "$destdir$cni_bin/loopback" ]; then
	if [ -z "$loopback" ]; then
		for c in /usr/lib/cni/loopback /usr/libexec/cni/loopback; do
			if [ -x "$c" ]; then loopback=$c; break; fi
		done
	fi
	if [ -n "$loopback" ] && [ -x "$loopback" ]; then
		ln -sfn "$loopback" "$destdir$cni_bin/loopback"
		echo "linked $destdir$cni_bin/loopback -> $loopback"
	else
		echo "warning: no loopback CNI plugin in $cni_bin: containerd needs one (apt-get install containernetworking-plugins, or --loopback FILE)" >&2
	fi
fi

if [ "$conf" = yes ]; then
	mkdir -p "$destdir$cni_conf"
	target=$destdir$cni_conf/10-knast.conflist
	if [ -e "$target" ] && [ "$force_conf" = no ]; then
		echo "kept $target (--force-conf replaces it)"
	else
		cp "$here/containerd/10-knast.conflist" "$target.new"
		chmod 0644 "$target.new"
		mv -f "$target.new" "$target"
		echo "installed $target"
	fi
fi
