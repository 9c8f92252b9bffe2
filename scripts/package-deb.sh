#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: <target>/debian/legate_<version>-1_<arch>.deb.
#
#   scripts/package-deb.sh [--no-build]
#
# --no-build: package the release binary already in the target dir (from
# `cargo build --release --bin legate`) instead of building it.
#
# The cargo-deb metadata is [package.metadata.deb] in core/Cargo.toml. Its asset paths
# under target/release/ are rewritten by cargo-deb to the real target dir (CARGO_TARGET_DIR),
# so the completions and man pages are generated under <target>/release/dist/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        -h | --help)
            sed -n '2,7s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "package-deb.sh: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

# Relative to the repository root, as cargo (run from here) takes it.
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/legate"
dist="$target/release/dist"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "==> Installing cargo-deb (crates.io)" >&2
    cargo install --locked cargo-deb
fi

if [ "$build" = 1 ]; then
    echo "==> Building $bin" >&2
    cargo build --release --bin legate
fi
if [ ! -x "$bin" ]; then
    echo "package-deb.sh: $bin not found; build it with 'cargo build --release --bin legate'" >&2
    exit 1
fi

echo "==> Generating completions and man pages in $dist" >&2
rm -rf "$dist"
mkdir -p "$dist/completions" "$dist/man"
"$bin" completion bash >"$dist/completions/legate.bash"
"$bin" completion zsh >"$dist/completions/_legate"
"$bin" completion fish >"$dist/completions/legate.fish"
"$bin" man "$dist/man" >&2
shopt -s nullglob
pages=("$dist"/man/*.1)
shopt -u nullglob
if [ "${#pages[@]}" -eq 0 ]; then
    echo "package-deb.sh: 'legate man' wrote no pages to $dist/man" >&2
    exit 1
fi
# -n: no name or timestamp in the header, so the package is reproducible.
gzip -9n "${pages[@]}"

echo "==> Packaging with cargo-deb" >&2
# cargo-deb prints the path of the .deb as its last line on stdout.
deb="$(cargo deb -p legate-core --no-build --output "$target/debian/" | tail -n 1)"
if [ ! -f "$deb" ]; then
    echo "package-deb.sh: cargo-deb did not report a .deb (got '$deb')" >&2
    exit 1
fi

echo "$deb"
dpkg-deb -c "$deb"
