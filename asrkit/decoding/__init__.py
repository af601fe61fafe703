"""CTC decoders: the shared interface, greedy, and prefix beam search with an LM."""
