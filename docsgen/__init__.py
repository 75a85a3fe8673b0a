"""The documentation's generated parts, made at build time from the code so that they cannot go stale.

``mkdocs build`` loads :mod:`docsgen.hooks`, which replaces each marker ``<!-- ortserve:generate NAME ARGS -->``
in a page with what the generator NAME returns (an unknown name fails the build):

    settings        every server setting, from ``ortserve.ops.settings.Settings`` field metadata
    metrics         every metric, from ``ortserve.metrics.catalogue()``
    outcomes        the ``outcome`` label's values, from the error tree
    steps           every optimize step, from the step registry ``ortserve.optimize.steps``
    errors          each error class: what it means and what to do (their docstrings), with its gRPC status
    other-errors    the errors outside the request path (settings, config.toml, manifests, optimize)
    protos          the gRPC services and messages, from protos/ (compiled with their comments)
    cli SCRIPT      ``--help`` of ``ortserve`` or ``ortserve-optimize``
    include FILE ["HEADING"]  a file of the repository (README.md, optimize/README.md, benchmarks/RESULTS.md),
                    or one section of it, with its links and images made to work in the site

The tests (tests/docs/) call the same functions, so a setting, metric, step or error that the generated
reference misses fails the suite too.
"""

from docsgen.reference import GENERATORS, generate

__all__ = ["GENERATORS", "generate"]
