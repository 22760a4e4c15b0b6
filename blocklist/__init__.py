"""The shared core of the blocklist service: address parsing, feed parsers,
the compiled range index, versions, settings and errors. Pure logic, no
network or server I/O; imported by ``ipchecking`` and ``blocklistupdater``.
"""

__version__ = "0.1.0"
