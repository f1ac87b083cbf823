#!/bin/sh
# Random secrets for deploy/compose.yaml in deploy/compose/secrets/ (ignored
# by git). Existing files are kept. tenants.json is yours to write: a JSON list of
# {"id", "api_key_sha256", "allowed_origins"} (see services/gateway/tenants.py).
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir" && chmod 700 "$dir"
for name in kafka-admin-password kafka-gateway-password kafka-provisioner-password \
    kafka-sync-password store-admin-password store-gateway-password store-provisioner-password \
    store-sync-password hub-service-token hub-login-token hub-notice-token sync-token sync-internal-token ticket-key; do
  # 0644 in a 0700 folder: other host accounts cannot reach it, and the services'
  # unprivileged uid (10001) can read the file compose mounts into its container.
  [ -f "$dir/$name" ] || (umask 022 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/$name")
done
[ -f "$dir/tenants.json" ] || echo "write $dir/tenants.json before starting" >&2
