# Sourced by demo.sh and test.sh: make (once) and activate the project's virtualenv
# in .venv, and install trainctl with the extras named in $TRAINCTL_EXTRAS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --disable-pip-version-check -e ".[${TRAINCTL_EXTRAS}]" 2>&1 \
    | grep -v "^WARNING: Location" || true
python -c "import trainctl" || { echo "trainctl did not install" >&2; exit 1; }
