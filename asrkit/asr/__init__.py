"""Recognition: the acoustic model, its training, evaluation, transcription and export."""
