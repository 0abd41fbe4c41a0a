# Two entry points (see README): `make run` sets everything up and starts MusicSSL on its default
# library; `make test` sets everything up and runs the test suite. Every other target is a helper.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch's CPU/CUDA wheels are large; these two are the pair this project is developed and CI'd with.
TORCH  ?= torch==2.14.1 torchaudio==2.11.0
# fluidsynth (it pulls the 6 MB TimGM6mb soundfont): the corpus recipe's renderer, exercised by
# tests/test_corpus_synth.py.
DEBS   := libportaudio2 fluidsynth

.PHONY: run test lint format bench system-deps package teacher

run: $(STAMP)
	$(VENV)/bin/musicssl

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

# The one-folder Linux app, dist/musicssl/, with CPU torch from its own venv (packaging/README.md).
package:
	bash packaging/build.sh

# Debian libraries that wheels cannot carry (PortAudio for preview playback); skipped when present.
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml | system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,recipe]'
	touch $(STAMP)

# The corpus recipe's optional teacher (musicnn, MagnaTagATune): TensorFlow in its own venv, so
# neither the app nor the training module ever imports it (training/corpus/teacher.py).
# musicnn 0.1.0 pins an old TensorFlow; --no-deps installs it next to a current one.
TEACHER := .venv-teacher
teacher: $(TEACHER)/.installed
$(TEACHER)/.installed:
	test -x $(TEACHER)/bin/python || python3 -m venv $(TEACHER)
	$(TEACHER)/bin/python -m pip install -q tensorflow-cpu==2.20.0 tf-keras==2.20.1 librosa soundfile
	$(TEACHER)/bin/python -m pip install -q --no-deps musicnn==0.1.0
	touch $@
