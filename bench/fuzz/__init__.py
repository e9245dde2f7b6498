"""``nox -s fuzz``: hostile input against a running ``paddock serve``, with every answer judged.

Two sources send at least 10,000 requests to a real server on a loopback
port. schemathesis generates positive and negative cases from each
provider's exported OpenAPI document (``contracts.openapi``); hypothesis
strategies generate raw requests over raw sockets, so the fuzzer controls
every byte: nesting 900-5,000 deep in every field of every model's create
body, strings and arrays up to the 32 MiB body limit, invalid UTF-8, wrong
and doubled content types, 16 MiB and 20,000 headers, broken framing, path
tricks and odd methods, the admin API and the object storage.

What a run proves (see ``bench.fuzz.oracles`` and ``bench.fuzz.tasks``):
no 5xx the spec does not document, no traceback in the server log, every
error in the envelope of the part of the server that answered, every request
answered that was owed an answer, no hostile input accepted, the server still
serving, and every task made before fuzzing answering identically after it.

Usage: ``python -m bench.fuzz [--requests N] [--seed S]`` or ``nox -s fuzz``.
The report lists each kind of failure once, with the bytes that showed it as
a Python expression to send again.
"""
