#!/usr/bin/env bash
# Install trainctl with paddle (CPU) and the test tools into .venv, then run the tests.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -k config -x
set -euo pipefail
TRAINCTL_EXTRAS="cpu,dev,source,onnx,slim"  # source: what PaddleDetection checkouts and their deploy/python/infer.py need; onnx: export --format onnx; slim: train --slim-config
source "$(dirname "$0")/_venv.sh"
# train --slim-config: paddleslim without its dependencies (its opencv pin conflicts with paddledet's; the slim extra
# holds the rest), see docs/training.md
python -m pip install --quiet --disable-pip-version-check --no-deps "paddleslim==2.6.0" 2>&1 | grep -v "^WARNING: Location" || true
# Multi-host tests build network namespaces and run sshd; they need root, iproute2 and OpenSSH.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    need=()
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
python -m pytest "$@"
