"""ortserve: an async gRPC inference server for ONNX Runtime.

The client is importable without the server's heavy dependencies::

    from ortserve.client import Client
"""

__version__ = "0.1.0"
