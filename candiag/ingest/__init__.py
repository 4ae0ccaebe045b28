"""Bus ingest: frame batches, capture readers/writers, live bus readers and the recorder."""
