#!/usr/bin/env bash
# Test services the suite starts itself (on free ports): redis-server from Debian's packages.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "redis-server is missing and this is not root: install it with 'apt-get install -y redis-server'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends redis-server >/dev/null
}
# The package starts a system-wide instance; the tests use their own.
(service redis-server stop || true) >/dev/null 2>&1
redis-server --version
