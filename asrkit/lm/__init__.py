"""N-gram language models: ARPA files, KenLM binaries, estimation and alpha/beta tuning."""
