"""Corpus recipes as library code: ``download_<corpus>()`` and ``prepare_<corpus>()``.

Each ``prepare_*`` writes JSON Lines manifests and is safe to re-run.
"""
