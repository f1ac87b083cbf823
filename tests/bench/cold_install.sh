#!/usr/bin/env bash
# Cold install time: `bash tests/bench/cold_install.sh`
#
# Clones the repository into a temporary folder and runs infra/install.sh with
# every cache empty (uv, pip, npm, Maven's local repository, Go's module and
# build caches), as on a brand-new machine; then runs it again warm, in the
# same clone, as the baseline of the same run. Prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet . "$work/repo"
export UV_CACHE_DIR=$work/cache/uv PIP_CACHE_DIR=$work/cache/pip
export npm_config_cache=$work/cache/npm MAVEN_OPTS="-Dmaven.repo.local=$work/cache/m2"
export GOMODCACHE=$work/cache/gomod GOCACHE=$work/cache/gobuild
millis() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(millis)
bash "$work/repo/infra/install.sh" >/dev/null
t1=$(millis)
bash "$work/repo/infra/install.sh" >/dev/null
t2=$(millis)
cold=$(( t1 - t0 )) warm=$(( t2 - t1 ))
printf 'cold install (empty caches): %d.%01ds\n' $(( cold / 1000 )) $(( cold % 1000 / 100 ))
printf 'warm install (same clone, baseline): %d.%01ds\n' $(( warm / 1000 )) $(( warm % 1000 / 100 ))
printf 'ratio: %dx\n' $(( cold / (warm > 0 ? warm : 1) ))
chmod -R u+w "$work/cache" 2>/dev/null || true  # Go makes its module cache read-only
