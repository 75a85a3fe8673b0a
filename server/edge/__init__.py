"""The edge: everything that knows gRPC.

Owns the servicers (``v1``: ortserve.v1.Inference; ``v2``: the Open Inference Protocol with
Triton's extensions; ``admin``; ``health``), the codecs between protocol messages and numpy
(``codec``, ``v2_codec``, ``triton``), the one mapping from the error tree to status codes
(``status``), the context every servicer method runs in (``call``), the RPC groups
(``methods``), the interceptor chain (``interceptors``), authentication and authorization
(``auth`` the chain link, ``authfile`` the auth file, ``principals`` credentials -> principal,
``policy`` the auth file in force, re-read on change and shared with the metrics port),
TLS with certificate rotation (``tls``) and the server that holds them (``server``). A servicer method is straight-line: decode -> a core call -> encode, inside
``async with edge.call(...)``.

May import: ``ortserve.rollout``, ``ortserve.core``, ``ortserve.repository`` and the base
modules. Never ``ortserve.ops``.
"""
