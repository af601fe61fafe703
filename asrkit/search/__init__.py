"""Audio search by spoken example: segments, embeddings, the index and queries."""
