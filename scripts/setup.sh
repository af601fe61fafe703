#!/usr/bin/env bash
# Installs everything asrkit needs on a fresh Debian machine: system packages (speech
# synthesisers for the synthetic corpus and tests, sox, libsndfile), a virtual
# environment, PyTorch and asrkit itself. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

APT_PACKAGES="espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsndfile1
  chromium chromium-driver"
missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "installing Debian packages: $missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# torch 2.14.1 and torchaudio 2.11.0 are a pair known to work together on CPU.
"$VENV/bin/pip" install -q torch==2.14.1 torchaudio==2.11.0
"$VENV/bin/pip" install -q -e ".[test,decoders,export,serve,vad]"
echo "asrkit is installed in $VENV ($("$VENV/bin/asrkit" --version))"
