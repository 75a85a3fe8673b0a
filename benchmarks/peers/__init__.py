"""Peer servers the benchmarks compare ortserve with, each in its own virtual environment.

``mlserver_peer``: MLServer serving the same ONNX file through ``ortserve_onnx_runtime`` (a small
custom runtime with adaptive batching), bound to 127.0.0.1 and driven over V2 like ortserve.
"""
