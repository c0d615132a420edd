"""Where Loom's outputs are kept and how clients reach them: signed file URLs (:mod:`.signing`),
the output store (:mod:`.local`, :mod:`.s3`), and the daemon's service over both (:mod:`.service`).

Nothing is imported here: :mod:`loom.daemon.config` reads :mod:`.config` while it is itself
being imported."""
