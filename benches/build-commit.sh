#!/bin/sh
# Builds kommo-sync as of <commit> in release mode and prints the binary's
# path, for `cargo bench --bench backfill -- --vs <path>`.
#
# The commit's tree is exported with `git archive` (no worktree is
# registered, nothing of this checkout changes) into
# ${KOMMO_BENCH_BUILDS:-${TMPDIR:-/tmp}/kommo-sync-builds}/<sha>, and built
# there with its own target directory; a second call reuses the build.
set -eu
commit=${1:?usage: benches/build-commit.sh <commit>}
repo=$(git rev-parse --show-toplevel)
sha=$(git -C "$repo" rev-parse --short=12 "$commit^{commit}")
dir=${KOMMO_BENCH_BUILDS:-${TMPDIR:-/tmp}/kommo-sync-builds}/$sha
if [ ! -f "$dir/Cargo.toml" ]; then
    mkdir -p "$dir"
    git -C "$repo" archive "$sha" | tar -x -C "$dir"
fi
CARGO_TARGET_DIR="$dir/target" nice cargo build --release --locked --quiet \
    --manifest-path "$dir/Cargo.toml" --bin kommo-sync >&2
echo "$dir/target/release/kommo-sync"
