"""The toolkit that tests and benchmarks share: ports, waiting, HTTP and a process cluster.

* :mod:`testkit.ports` — free TCP ports (``free_ports``, ``free_port``);
* :mod:`testkit.waiting` — the deadline loop (``wait_until`` and ``wait_until_async``);
* :mod:`testkit.http` — one HTTP call, raising (``http``, ``HttpError``) or not (``call``,
  ``Answer``);
* :mod:`testkit.cluster` — N ``python -m node`` processes on loopback (``Cluster``), with the
  fault verbs of :mod:`testkit.cluster_faults` and, for per-machine addresses and partitions,
  the network namespaces of :mod:`testkit.netns`.

Who imports whom: ``tests/`` and ``bench/`` import this package and nothing else does (the
product, ``client/`` included, must stay usable without it). It imports the standard library,
PyYAML and nothing of ``tests/`` — so the benchmarks, which may not import the tests, can use
it — and no server module either: the cluster runs the node as child processes. This
``__init__`` imports nothing, so ``import testkit.http`` stays standard-library only.
"""
