"""Example models and recipes that show the toolchain: the digits demo (``make serve``) and the CNN used by
the pruning benchmark."""
