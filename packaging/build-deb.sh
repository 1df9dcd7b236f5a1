#!/usr/bin/env bash
# Builds target/debian/ferry_<version>_<arch>.deb with dpkg-deb, from a release
# build of this tree. Needs cargo, dpkg-dev (dpkg-parsechangelog,
# dpkg-shlibdeps, dpkg-architecture) and binutils (strip); lint tooling lives
# in packaging/lint.sh.
#
# Reproducible: the version and SOURCE_DATE_EPOCH come from
# packaging/debian/changelog, build paths are remapped out of the binaries,
# every file gets the same mtime, modes are set explicitly, owners are
# root:root and file lists are sorted, so two builds of the same tree give a
# byte-identical .deb. The release build goes to its own target directory
# (target/debian/cargo) so that its flags do not rebuild target/release.
#
# Usage: bash packaging/build-deb.sh   (prints the .deb's path on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
pkg=packaging
umask 022
export LC_ALL=C TZ=UTC

for tool in cargo dpkg-parsechangelog dpkg-shlibdeps dpkg-architecture dpkg-deb strip; do
  command -v "$tool" >/dev/null || {
    echo "build-deb.sh: $tool not found (apt-get install dpkg-dev binutils; cargo from rustup)" >&2
    exit 1
  }
done

# ---- version and date, from the changelog ----------------------------------
version=$(dpkg-parsechangelog -l "$pkg/debian/changelog" -S Version)
upstream=${version%-*}
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [ "$upstream" != "$cargo_version" ]; then
  echo "build-deb.sh: packaging/debian/changelog says $version but Cargo.toml says $cargo_version" >&2
  exit 1
fi
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$pkg/debian/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

for f in ferryd.service ferryd.toml python/ferry_client.py ansible/connection/ferry.py; do
  [ -f "$pkg/$f" ] || { echo "build-deb.sh: $pkg/$f is missing" >&2; exit 1; }
done
for page in man/ferryd.8 man/ferry.1; do
  [ -f "$page" ] || { echo "build-deb.sh: $page is missing" >&2; exit 1; }
done

# ---- release build ------------------------------------------------------------
# Paths of this checkout and of the cargo registry would otherwise end up in
# panic messages, and differ from one clone to the next.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export CARGO_TARGET_DIR="$top/target/debian/cargo"
export RUSTFLAGS="--remap-path-prefix=$top=/usr/src/ferry-$upstream --remap-path-prefix=$cargo_home=/usr/share/cargo"
export CARGO_INCREMENTAL=0
cargo build --release --locked --bins >&2

# ---- the tree ---------------------------------------------------------------------
out=target/debian
stage=$out/ferry_${version}_${arch}
deb=$out/ferry_${version}_${arch}.deb
rm -rf "$stage" "$deb"
mkdir -p "$stage/DEBIAN"

install -D -m 0755 "$CARGO_TARGET_DIR/release/ferryd" "$stage/usr/sbin/ferryd"
install -D -m 0755 "$CARGO_TARGET_DIR/release/ferry" "$stage/usr/bin/ferry"
# As dh_strip does for executables.
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
  "$stage/usr/sbin/ferryd" "$stage/usr/bin/ferry"

for page in man/*.[1-8]; do
  section=${page##*.}
  mkdir -p "$stage/usr/share/man/man$section"
  gzip -9n <"$page" >"$stage/usr/share/man/man$section/${page##*/}.gz"
done

install -D -m 0644 "$pkg/debian/copyright" "$stage/usr/share/doc/ferry/copyright"
gzip -9n <"$pkg/debian/changelog" >"$stage/usr/share/doc/ferry/changelog.Debian.gz"
install -D -m 0644 "$pkg/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/ferry"
install -D -m 0644 "$pkg/ferryd.service" "$stage/lib/systemd/system/ferryd.service"
install -D -m 0644 "$pkg/ferryd.toml" "$stage/etc/ferry/ferryd.toml"
# The Python client library, importable by the system's python3, and the
# Ansible connection plugin where Ansible looks without configuration (the
# plugin also finds the library at this path when Ansible runs in a venv).
install -D -m 0644 "$pkg/python/ferry_client.py" "$stage/usr/lib/python3/dist-packages/ferry_client.py"
install -D -m 0644 "$pkg/ansible/connection/ferry.py" "$stage/usr/share/ansible/plugins/connection/ferry.py"

# ---- control area -----------------------------------------------------------------
install -m 0644 "$pkg/debian/conffiles" "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$pkg/debian/$script" "$stage/DEBIAN/$script"
done

# Depends from the binaries' shared libraries. dpkg-shlibdeps wants to run
# from a source tree (debian/control); give it a throwaway one.
shlibs_dir=$(mktemp -d)
trap 'rm -rf "$shlibs_dir"' EXIT
mkdir -p "$shlibs_dir/debian"
printf 'Source: ferry\n\nPackage: ferry\nArchitecture: any\n' >"$shlibs_dir/debian/control"
shlibs=$(cd "$shlibs_dir" && dpkg-shlibdeps -O "$top/$stage/usr/sbin/ferryd" "$top/$stage/usr/bin/ferry")
shlibs_depends=${shlibs#shlibs:Depends=}
[ -n "$shlibs_depends" ] && [ "$shlibs_depends" != "$shlibs" ] || {
  echo "build-deb.sh: dpkg-shlibdeps gave no Depends: $shlibs" >&2
  exit 1
}

# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, and
# one per directory or link.
installed_size=$(find "$stage" -path "$stage/DEBIAN" -prune -o -mindepth 1 -printf '%y %s\n' |
  awk '$1 == "f" { n += int(($2 + 1023) / 1024) } $1 != "f" { n += 1 } END { print n }')

sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
  -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@SHLIBS_DEPENDS@/$shlibs_depends/" \
  "$pkg/debian/control" >"$stage/DEBIAN/control"
if grep -q '@[A-Z_]*@' "$stage/DEBIAN/control"; then
  echo "build-deb.sh: unfilled field in DEBIAN/control" >&2
  exit 1
fi

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$stage/DEBIAN/md5sums"

# ---- normalize and build -------------------------------------------------------
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f ! -perm -u+x -exec chmod 0644 {} +
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control"
find "$stage" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

# --root-owner-group: root:root whoever builds; one compressor thread so the
# xz stream does not depend on the machine's core count.
dpkg-deb --root-owner-group -Zxz --threads-max=1 --build "$stage" "$deb" >&2
echo "$deb"
