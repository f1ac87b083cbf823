#!/bin/sh
# Random secrets for deploy/compose.yaml in deploy/compose/secrets/ (ignored
# by git). Existing files are kept. Tenants are made afterwards with
# `python -m nbembed.admin tenants create` and the admin-token written here.
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir" && chmod 700 "$dir"
for name in kafka-admin-password kafka-gateway-password kafka-provisioner-password \
    kafka-sync-password store-admin-password store-gateway-password store-provisioner-password \
    store-sync-password hub-service-token hub-login-token hub-notice-token sync-token sync-internal-token ticket-key admin-token \
    metrics-token; do
  # 0644 in a 0700 folder: other host accounts cannot reach it, and the services'
  # unprivileged uid (10001) can read the file compose mounts into its container.
  [ -f "$dir/$name" ] || (umask 022 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/$name")
done
