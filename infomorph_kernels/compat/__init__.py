"""Drop-ins for the field's PID code, over the public API only (never importing that code).

- :mod:`infomorph_kernels.compat.sxpid`: SxPID's ``pid`` and ``PDF`` (``from infomorph_kernels.compat
  import sxpid as SxPID`` is all a user of SxPID or nninfo changes).
"""
