"""The wire format: what producers, nodes and consumers exchange, and nothing else.

- ``batch``: the record-batch header (layout, checksums) and the batch codec;
- ``records``: the records inside a batch body;
- ``partitioning``: which tablet a key goes to;
- ``limits``: sizes every side must agree on;
- ``error_codes``: the one table of error codes (HTTP status, retriable, outcome unknown);
- ``errors``: the error base class, whose subclasses take their flags from that table.

This package is the bottom layer: it imports nothing else of tabletlog, so the client (which
imports only this package) runs on machines with no server dependency installed. Thread-safe
(pure functions and constants).
"""
