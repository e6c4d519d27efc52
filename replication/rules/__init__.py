"""The replication decisions, as pure functions: inputs in, decision out.

Every rule the system's safety rests on is here, apart from the components that act on it, so
it can be read in one place and tested case by case (as etcd's raft package tests its rules):

* :mod:`~replication.rules.high_watermark` — how far a tablet is committed, on its leader and
  on its followers, and what a replica may count as held;
* :mod:`~replication.rules.isr` — when a follower is caught up, when it lags, and the in-sync
  set the leader asks the controller for;
* :mod:`~replication.rules.divergence` — where a follower truncates before fetching from a new
  leader (leader epochs, Kafka KIP-101/279);
* :mod:`~replication.rules.taint` — a replica that lost committed records never leads until it
  has them again;
* :mod:`~replication.rules.roles` — which local replicas this node leads, follows or deletes,
  given the metadata view;
* :mod:`~replication.rules.liveness` — when the controller fences, probes or trusts a node.

Where a new replica goes and who leads after a failure (clean or unclean election) is the same
kind of rule and lives in :mod:`replication.placement`, next to the metadata model that applies
it.

No rule reads a clock, touches a file, awaits, logs or mutates its arguments: the components
(``leader``, ``follower``, ``isr``, ``replica_health``, ``replica_manager``, ``liveness``) gather
the inputs, call the rule and carry out the decision. Offsets are exclusive ends throughout
(see ``storage.log``). Everything here is thread-safe.
"""
