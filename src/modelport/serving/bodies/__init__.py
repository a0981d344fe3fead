"""Request and answer bodies of ``/invocations`` beyond JSON, and HTTP content codings.

Each module is pure (no Flask, no app): bytes and the model's signature in, a
:class:`~modelport.model_format.payload.Payload` out, or outputs in and bytes out.
:mod:`modelport.serving.codec` gathers them for the views.

- :mod:`.encoding`: ``Content-Type``/``Accept`` entries, and ``Content-Encoding`` undone under a
  size limit (a compression bomb is a 413, never inflated past it).
- :mod:`.csvtable`: ``text/csv`` in (with or without a header row) and out.
- :mod:`.npy`: ``application/x-npy`` in and out (never a pickle).
- :mod:`.jsonlines`: ``application/jsonlines`` in and out.
- :mod:`.parquet`: ``application/vnd.apache.parquet`` in (pyarrow, the ``parquet`` extra).
"""
