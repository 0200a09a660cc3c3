#!/usr/bin/env bash
# The project's one test command (README): installs what the tests need when
# it is missing, then runs every test of the workspace.
#
# The Redis tests start real redis-server processes (single, cluster, TLS;
# never a packaged service) and the TLS test makes certificates with openssl.
# A test that needs a missing server fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in redis-server redis-cli openssl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing what the tests need (missing: ${missing[*]})" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq redis-server redis-tools openssl >/dev/null
  else
    echo "error: install redis-server, redis-cli and openssl (no apt-get here), then run this again" >&2
    exit 1
  fi
fi

cargo test --workspace "$@"
