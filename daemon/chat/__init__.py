"""A chat request's way through the daemon, whichever API it came in by: its intake (rules, route,
the chain of models that may serve it, image URLs; :mod:`.intake`), the parameter policy applied
to each model of the chain as it is tried (:mod:`.param_policy`; not the scheduler's queue policy,
:mod:`loom.daemon.scheduler.policy`), the generations run on the chain (:mod:`.generations`), and
an answer assembled from a model's chunks, tokens counted (:mod:`.assemble`)."""
