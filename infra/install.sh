#!/usr/bin/env bash
# Install everything the local stack needs, idempotently, from package registries
# only. Downloads and builds are cached in ignored folders (.venv, .cache,
# infra/hub/node_modules) and in the tools' own caches (~/.m2, Go's module and
# build caches, uv's and npm's caches), so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${NBEMBED_STACK_CACHE_DIR:-$ROOT/.cache}
step() { printf '==> %s\n' "$*"; }

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "missing $1: $2" >&2; exit 1; }
}
need python3.11 "install Python 3.11"
need java "install a Java 17 runtime (apt-get install openjdk-17-jre-headless)"
need mvn "install Maven (apt-get install maven)"
need go "install Go 1.24 or newer"
need node "install Node.js 20"
need npm "install npm"
# Debian's packages the stack runs: PostgreSQL 15 (FerretDB's backend; the stack
# runs its own cluster), and for the local-users spawner a Python 3.11 every
# account may run, the accounts tools and nftables (the egress filter that keeps
# the users' servers and kernels off every port but the hub API's and the gateway's).
debs=()
[ -x "${NBEMBED_STACK_POSTGRES_BIN_DIR:-/usr/lib/postgresql/15/bin}/initdb" ] || debs+=(postgresql)
[ -x /usr/bin/python3.11 ] || debs+=(python3.11)
command -v useradd >/dev/null 2>&1 || [ -x /usr/sbin/useradd ] || debs+=(passwd)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || debs+=(nftables)
if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    step "Debian packages: ${debs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    echo "missing Debian packages: sudo apt-get install ${debs[*]}" >&2; exit 1
  fi
fi

step "Python environment (.venv)"
if [ ! -x .venv/bin/uv ]; then
  python3.11 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
fi
.venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev]'

step "Kafka jars (Maven Central)"
if [ ! -f "$CACHE/kafka/lib/.complete" ] || [ infra/kafka/pom.xml -nt "$CACHE/kafka/lib/.complete" ]; then
  rm -rf "$CACHE/kafka/lib"
  mvn --batch-mode --quiet -Dstyle.color=never -f infra/kafka/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$CACHE/kafka/lib" -DincludeScope=runtime
  touch "$CACHE/kafka/lib/.complete"
fi

step "FerretDB (Go module proxy, built here)"
if [ ! -x "$CACHE/bin/ferretdb" ] || [ infra/ferretdb/main.go -nt "$CACHE/bin/ferretdb" ] \
   || [ infra/ferretdb/go.mod -nt "$CACHE/bin/ferretdb" ]; then
  mkdir -p "$CACHE/bin"
  (cd infra/ferretdb && go build -trimpath -o "$CACHE/bin/ferretdb" .)
fi

step "helm 3.22.0 (Go module proxy, built here; for the chart's offline checks)"
HELM_VERSION=v3.22.0
if [ ! -x "$CACHE/bin/helm-$HELM_VERSION/helm" ]; then
  GOBIN="$CACHE/bin/helm-$HELM_VERSION" go install -trimpath "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

step "configurable-http-proxy (npm)"
if [ ! -x infra/hub/node_modules/.bin/configurable-http-proxy ] \
   || [ infra/hub/package-lock.json -nt infra/hub/node_modules/.package-lock.json ]; then
  npm ci --prefix infra/hub --no-audit --no-fund --loglevel=error
fi

step "nbembed bridge (JupyterLab 4 / Notebook 7 extension, built here)"
bridge_out=.venv/share/jupyter/labextensions/nbembed-bridge
if [ ! -f "$bridge_out/package.json" ] || [ -n "$(find infra/bridge/src infra/bridge/package.json \
     -newer "$bridge_out/package.json" 2>/dev/null | head -1)" ]; then
  (cd infra/bridge \
    && npm ci --no-audit --no-fund --loglevel=error \
    && npx tsc \
    && ../../.venv/bin/jupyter-builder build .)
  rm -rf "$bridge_out" && mkdir -p "$(dirname "$bridge_out")"
  cp -r infra/bridge/labextension "$bridge_out"
fi
# Embedded, Jupyter shows one notebook: no news prompt, no update check.
mkdir -p .venv/share/jupyter/lab/settings
cp infra/hub/overrides.json .venv/share/jupyter/lab/settings/overrides.json

step "Second kernel for the demo profiles (a small venv; infra/kernels.py)"
.venv/bin/python -m infra.kernels >/dev/null

step "Chromium (Debian package, for the browser tests)"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: sudo apt-get install chromium (needed by tests/browser)" >&2
  fi
fi

step "installed"
