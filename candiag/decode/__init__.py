"""Decoding: DBC loading with address masks, and the vectorized batch decoder.

* :mod:`candiag.decode.dbc`      DBC files -> :class:`~candiag.decode.dbc.ChargerDatabase`
  (candiag attribute conventions, identifier clashes refused, vectorized ``match()``)
* :mod:`candiag.decode.decoder`  :class:`~candiag.decode.decoder.BatchDecoder`: a frame batch
  -> per-message signal arrays, equal to cantools frame by frame
* :mod:`candiag.decode.jsonl`    JSON Lines export of decoded frames (``candiag decode``)
"""
