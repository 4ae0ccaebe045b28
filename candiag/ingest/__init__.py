"""Bus ingest: frame batches, capture readers/writers, live bus readers, the recorder and the
recording metadata (:mod:`~candiag.capture.metadata`: bitrate, interface, channel of a recording)."""
