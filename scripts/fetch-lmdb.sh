#!/usr/bin/env bash
# Fetches LMDB 0.9.31 (Debian's copy of the upstream release) and applies RecDB's hardening patch, into
# Sources/CLMDB/vendor/ (gitignored; nothing of LMDB is committed). The CLMDB target compiles it.
#
# Idempotent and offline after the first run: the tarball is kept in .cache/ (or taken from
# LMDB_TARBALL=path), its sha256 is pinned, and the sources are re-extracted only when the tarball's hash
# or a patch changed (a stamp file records both). `make deps` (scripts/install-deps.sh) runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.9.31
URL=http://deb.debian.org/debian/pool/main/l/lmdb/lmdb_${VERSION}.orig.tar.gz
# Also listed in Debian's lmdb_0.9.31-1.dsc (Checksums-Sha256).
SHA256=d35d4f6f46313d62fd342c9dcbf574432919ce5e802d2b6cbe2ebd549821e5c4
TARBALL=${LMDB_TARBALL:-.cache/lmdb_${VERSION}.orig.tar.gz}
DEST=Sources/CLMDB/vendor
PATCHES=(Sources/CLMDB/patches/*.patch)

sha() { sha256sum "$1" | cut -d' ' -f1; }
stamp=$( { echo "$SHA256"; for p in "${PATCHES[@]}"; do sha "$p"; done; } | sha256sum | cut -d' ' -f1)
if [ -f "$DEST/.stamp" ] && [ "$(cat "$DEST/.stamp")" = "$stamp" ] && [ -f "$DEST/mdb.c" ]; then
    exit 0
fi
if [ ! -f "$TARBALL" ] || [ "$(sha "$TARBALL")" != "$SHA256" ]; then
    mkdir -p "$(dirname "$TARBALL")"
    echo "fetch-lmdb: downloading $URL" >&2
    curl -fsSL --retry 3 -o "$TARBALL.part" "$URL"
    mv "$TARBALL.part" "$TARBALL"
fi
got=$(sha "$TARBALL")
if [ "$got" != "$SHA256" ]; then
    echo "fetch-lmdb: $TARBALL has sha256 $got, expected $SHA256: refusing it" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$TARBALL" -C "$work"
src="$work/openldap-LMDB_${VERSION}/libraries/liblmdb"
mkdir -p "$work/vendor"
cp "$src"/{mdb.c,midl.c,lmdb.h,midl.h,LICENSE,COPYRIGHT} "$work/vendor/"
for p in "${PATCHES[@]}"; do
    patch --quiet --forward --no-backup-if-mismatch -p1 -d "$work/vendor" < "$p" || {
        echo "fetch-lmdb: $p does not apply to LMDB $VERSION" >&2; exit 1; }
done
echo "$stamp" > "$work/vendor/.stamp"
rm -rf "$DEST"
mv "$work/vendor" "$DEST"
echo "fetch-lmdb: LMDB $VERSION with ${#PATCHES[@]} patch(es) in $DEST" >&2
