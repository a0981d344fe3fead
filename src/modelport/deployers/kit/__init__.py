"""The shared machinery of deploy targets: what every target needs and none writes twice.

- :mod:`~.rollout`: a verb as named steps with undo; the same steps give ``--dry-run``;
  failpoints for tests.
- :mod:`~.waiting`: :func:`~.waiting.wait_until` a condition holds, with a deadline, backoff,
  a heartbeat and the target's diagnostics in the timeout error.
- :mod:`~.errors`: an SDK's exceptions mapped onto modelport's errors, with hints.
- :mod:`~.images`: build the serving image (with the runtime cache), push it, remove it.
- :mod:`~.naming`: resource names with generations; one vocabulary of labels and tags.
- :mod:`~.progress`: the facade a target reports its steps, waits and warnings to.
- :mod:`~.http`, :mod:`~.processes`, :mod:`~.state`, :mod:`~.background`: HTTP to a
  deployment, processes on this machine, state files, verbs finished in the background.

Nothing here imports a cloud SDK, docker-py or :mod:`modelport.cli`. Importing this package
imports none of its modules.
"""
