#!/usr/bin/env bash
# The project's one test command (README): installs what the tests need when
# it is missing, runs every test of the workspace, then builds the Python
# binding's wheel, installs it into a fresh virtualenv and runs its pytest
# suite.
#
# The Redis tests start real redis-server processes (single, cluster, TLS;
# never a packaged service) and the TLS test makes certificates with openssl.
# A test that needs a missing server fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

cargo test --workspace "$@"

# The Python binding, as a user installs it: a wheel in a fresh virtualenv.
venv=target/python-venv
rm -rf "$venv" target/wheels
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin pytest pydantic
"$venv/bin/maturin" build -q -m bindings/python/Cargo.toml -o target/wheels --interpreter "$venv/bin/python"
"$venv/bin/pip" install -q --disable-pip-version-check target/wheels/ta_persistence-*.whl
cargo build -q -p persistence-cli
(cd bindings/python/tests && TA_PERSIST_BIN="$PWD/../../../target/debug/ta-persist" \
  "../../../$venv/bin/python" -m pytest -q -p no:cacheprovider .)
