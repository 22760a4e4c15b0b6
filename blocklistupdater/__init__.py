"""The feed updater: fetches, parses, checks, compiles and publishes versions.

In embedded mode it runs inside the API process; :class:`Updater` is the
library entry (``sync_once`` / ``sync_feed``), :class:`SyncScheduler` runs it
on a schedule.
"""
