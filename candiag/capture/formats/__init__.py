"""One module per capture format: the bytes, lines or records of a format into frame batches.

* :mod:`.candump`: candump ``-L`` text, candiag's own format (a package: its three parsing
  tiers, the chunk reader and the formatter);
* Vector ASC (:mod:`.asc`) and BLF (:mod:`.blf`), PEAK TRC (:mod:`.trc`), python-can CSV
  (:mod:`.csvlog`), candump *screen* output (:mod:`.screen`), ASAM MDF 4 (:mod:`.mf4`,
  optional extra ``candiag[mf4]``);
* shared by the readers: :mod:`.rows`, the column builder records are appended to and the
  :class:`~.rows.Sink` every reader reports into, and :mod:`.errormap`, what each format
  records about an error frame, mapped into SocketCAN's classes only where the format
  carries it, otherwise an *unclassified* error frame.

A format module knows its syntax and nothing about files: where the bytes come from
(file, standard input, gzip) is :mod:`candiag.capture.source`'s, which format a capture is
:mod:`candiag.capture.detect`'s, and the reader front (:mod:`candiag.capture.reader`)
hands each reader the capture in the form it takes.  Text readers skip a bad line and go
on (each one reported with its line number, the format and the reason in words); a reader
that cannot resume says where it stopped.  Every reader passes the same contract tests
(``tests/test_capture_contract.py``).  The facts each reader relies on, with their public
sources, are in docs/capture-formats.md.
"""
