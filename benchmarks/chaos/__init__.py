"""The chaos suite: ortserve under faults and hostile input, on loopback, with what it loses.

    python -m benchmarks.chaos                  # every scenario (a few minutes)
    python -m benchmarks.chaos --smoke          # each scenario briefly (the test suite runs this)
    python -m benchmarks.chaos --write-results  # and the section of benchmarks/RESULTS.md

Scenarios, each against its own server under paced load (Predict, one row, a few hundred per
second) while a separate process checks health every 10 ms:

    sigterm     SIGTERM in the middle of a burst of 48 concurrent 64-row requests (one process,
                then --workers 2), with clients that watch the server's health, then with
                clients that ignore it
    kill        kill -9 of a worker, repeatedly (--workers 2)
    versions    versions published and removed while requests name none (--poll-interval)
    flags       the flags document replaced every 0.2 s, every other one invalid
    hostile     oversized and malformed messages: 64 MB requests over the message limit, 60 MB
                BYTES tensors for a model that does not exist, requests over the in-flight bound,
                bytes that are no message, absurd shapes

Each request ends in one of: answered (its status), refused by the drain (UNAVAILABLE saying the
server is shutting down), not sent (a health-checking client's UNAVAILABLE: the server was
NOT_SERVING), never connected (UNAVAILABLE before reaching the server), or lost:
CANCELLED by the server, its connection dropped while it was in flight, or no answer within the
client's 30 s deadline. Reported per scenario: sent, answered by status, lost, the longest health
check latency, and the server's RSS before, at peak and after.

Modules: ``load`` (paced load, outcomes, the health probe's client side), ``probe`` (the probe
process), ``scenarios`` (the scenarios), ``report`` (tables and the RESULTS.md section).
"""
