#!/usr/bin/env bash
# System packages the test suite needs, from Debian's archive:
#   redis-server    the suite starts its own instances on free ports (the real thing, no fakes);
#   docker-compose  1.29, only to validate docker-compose.yml with `docker-compose config` (no engine needed).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "missing system packages: ${missing[*]}; install them with 'apt-get install -y ${missing[*]}'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}
# The package starts a system-wide redis; the tests use their own instances.
(service redis-server stop || true) >/dev/null 2>&1
redis-server --version
docker-compose version --short
