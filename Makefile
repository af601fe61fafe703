# Two commands do everything on a fresh machine:
#   make demo   synthesise a small corpus, train, evaluate, transcribe, search (~5 min)
#   make test   run the test suite
# Both install what they need on first use (Debian packages, .venv, Python packages).

VENV   ?= .venv
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash recipes/synth/run.sh

bench: $(STAMP)
	$(VENV)/bin/python bench/train_throughput.py
	$(VENV)/bin/python bench/recurrent_step_cost.py
	$(VENV)/bin/python bench/transcribe_rtf.py
	$(VENV)/bin/pip install -q --no-deps pyctcdecode pygtrie
	$(VENV)/bin/python bench/beam_decode.py
	$(VENV)/bin/python bench/bf16_accuracy.py
	$(VENV)/bin/python bench/stream_memory.py
	$(VENV)/bin/python bench/startup.py
	$(VENV)/bin/python bench/index_build_speed.py --busy
	$(VENV)/bin/python bench/word_times.py
	$(VENV)/bin/python bench/speech_detectors.py detect

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
