#!/usr/bin/env bash
# Build the one-folder Linux app: dist/musicssl/musicssl, with CPU-only torch inside.
#
# Why a separate venv (.venv-pkg): the dev venv's CUDA torch would put gigabytes of CUDA
# libraries into the folder; the build venv holds only what the app ships with.
# Usage: make package   (or: bash packaging/build.sh). Environment overrides:
#   TORCH_SPEC / TORCHAUDIO_SPEC  the torch pair to bundle (torch must be a CPU build)
#   TORCH_PIP_ARGS                extra pip arguments for them, e.g. an index of CPU wheels
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PKG_VENV:-.venv-pkg}
PY=$VENV/bin/python
STAMP=$VENV/.installed
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCHAUDIO_SPEC=${TORCHAUDIO_SPEC:-torchaudio==2.11.0}
DIST=dist/musicssl

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ packaging/build.sh -nt "$STAMP" ]; then
  test -x "$PY" || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086 # TORCH_PIP_ARGS is a list of words
  "$PY" -m pip install -q ${TORCH_PIP_ARGS:-} "$TORCH_SPEC" "$TORCHAUDIO_SPEC"
  "$PY" -c 'import sys, torch; torch.version.cuda and sys.exit(
      f"torch {torch.__version__} is a CUDA build; bundle a CPU one (TORCH_SPEC/TORCH_PIP_ARGS)")'
  # hnswlib compiles with -march=native unless told not to: the app must run on any x86-64 CPU.
  # --no-cache-dir so pip cannot reuse a wheel that was built natively for the dev venv.
  HNSWLIB_NO_NATIVE=1 "$PY" -m pip install -q --no-cache-dir --no-binary hnswlib hnswlib
  "$PY" -m pip install -q pyinstaller
  touch "$STAMP"
fi

# torchaudio's Linux wheels link their optional C++ extension against CUDA torch, so with a CPU
# torch `import torchaudio` fails. MusicSSL uses only torchaudio.functional (pure Python), and
# torchaudio skips an extension that is absent, so the build venv drops the unloadable one.
if ! "$PY" -c 'import torchaudio' 2>/dev/null; then
  rm -f "$VENV"/lib/python3*/site-packages/torchaudio/lib/*.so
  "$PY" -c 'import torchaudio'
fi

# The project itself, reinstalled (not editable) on every build so the bundle has today's code;
# a stale setuptools build/lib could resurrect deleted modules, so it goes first.
rm -rf build/lib build/bdist.*
"$PY" -m pip install -q --force-reinstall --no-deps .
"$PY" -m pip install -q .

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/musicssl.spec
QT_QPA_PLATFORM=offscreen "$PY" packaging/render_icon.py "$DIST/musicssl.png"
cp packaging/musicssl.desktop "$DIST/"
echo "built $DIST in $(($(date +%s) - start)) s: $(du -sh "$DIST" | cut -f1)"
echo "check it: $DIST/musicssl --self-test"
