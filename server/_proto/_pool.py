"""A descriptor pool of ortserve's own: the Open Inference Protocol's ``inference.*`` symbols are
also defined by Triton's and KServe's Python clients, and two definitions in protobuf's default
pool refuse to load in one process. Ours live here, so the server, the client and tritonclient
can share a process. (Written by scripts/gen_protos.py.)"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
