#!/usr/bin/env bash
# Installs what the tests need when it is missing, with apt-get: redis-server
# and redis-cli (the Redis tests start real servers), openssl (the TLS test
# makes certificates), python3 with venv and pip (the Python binding's build
# and its pytest suite). Called by scripts/test.sh and .ci/run.
set -euo pipefail

missing=()
for tool in redis-server redis-cli openssl python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if command -v python3 >/dev/null && ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing what the tests need (missing: ${missing[*]})" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
if ! command -v apt-get >/dev/null; then
  echo "error: install redis-server, redis-cli, openssl and python3 (with venv), then run this again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq redis-server redis-tools openssl python3 python3-venv python3-pip >/dev/null
