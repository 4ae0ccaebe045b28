"""Capture formats written by tools other than candump: detection, readers, error records.

Owns everything between a foreign capture's bytes and a :class:`~candiag.ingest.frames.FrameBatch`:

* :mod:`.detect` says what a file is (content first, suffix second) and why;
* one reader per format: Vector ASC (:mod:`.asc`) and BLF (:mod:`.blf`), PEAK TRC
  (:mod:`.trc`), python-can CSV (:mod:`.csvlog`), candump *screen* output (:mod:`.screen`),
  ASAM MDF 4 (:mod:`.mf4`, optional extra ``candiag[mf4]``);
* :mod:`.errormap`: what each format records about an error frame, mapped into SocketCAN's
  classes only where the format carries it, otherwise an *unclassified* error frame;
* :mod:`.rows`: the column builder every reader fills, turned into a batch in bulk.

Text readers skip a bad line and go on (each one reported with its line number, the format
and the reason in words); a reader that cannot resume says where it stopped.  The facts each
reader relies on, with their public sources, are in docs/capture-formats.md.
candump ``-L`` text is not here: :mod:`candiag.capture.candump` parses it, vectorized.
"""
