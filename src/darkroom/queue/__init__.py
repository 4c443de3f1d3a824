"""The queue's moving parts: each node's heartbeat (and the sweeps it runs) and the signals
between processes (``LISTEN/NOTIFY``); the job table itself is in :mod:`darkroom.store`."""
