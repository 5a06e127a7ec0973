"""Drop-ins for the field's PID code, over the public API only (never importing that code).

- :mod:`infomorph_kernels.compat.im_net`: the published infomorphic code (``im_net``, both its
  first snapshot and its current version) on the engine: ``install()`` patches ``IM_Layer.loss``
  and its histogram-level PID; ``mode="published"`` reproduces that code's numbers.
- :mod:`infomorph_kernels.compat.sxpid`: SxPID's ``pid`` and ``PDF`` (``from infomorph_kernels.compat
  import sxpid as SxPID`` is all a user of SxPID or nninfo changes).
- :mod:`infomorph_kernels.compat.idtxl`: IDTxl's bundled SxPID (``idtxl.pid_goettingen.pid``) on the
  engine; ``install()`` / ``uninstall()``.
- :mod:`infomorph_kernels.compat.dit`: ``install()`` makes ``dit.pid.PID_SX`` (average and pointwise)
  compute on the engine, same class and results as dit's; ``uninstall()`` restores dit.
"""
