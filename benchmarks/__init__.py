"""Benchmarks of ortserve: load generators, the comparison with raw ONNX Runtime and MLServer,
and the optimize toolchain's targets. Figures go to benchmarks/RESULTS.md.

Scripts run as modules from the repository root, e.g. ``python -m benchmarks.bench_server --help``;
they need the project installed (``make install-dev``) and nothing on ``sys.path``. ``make bench``
runs them all.

Scripts (nothing imports them):
    bench_server    server core: one-row Predict against raw ONNX Runtime's best batch
    bench_compare   the full comparison: sweeps, overload, profiles, MLServer
    bench_peers     one table at c=32: raw ONNX Runtime, ortserve, perf_analyzer, MLServer at every
                    setting of its performance knobs (best marked), server CPU per request
    bench_batching  adaptive batching against the raw limit (CNN at 1 and 2 threads) and the window
    bench_workers   --workers 2 against one process, client and server pinned to separate cores or not
    bench_ab        before/after of code changes: the server at git revisions, interleaved rounds
    bench_optimize  the optimize toolchain's targets (pruned CNN, MiniLM INT8, the demo recipe)
    bench_flags     what flag evaluation adds to a request
    bench_monitoring  what drift sampling, the payload log and the feedback index add per request
    bench_security  what API-key auth, JWT auth and TLS add to a request, against plaintext
    chaos           (``python -m benchmarks.chaos``) faults and hostile input: SIGTERM, kill -9,
                    version and flag churn, oversized messages; lost requests, health stalls, RSS
                    (chaos.probe: the health probe's process)
    gpu_check       (``bash benchmarks/gpu_check.sh`` makes its environment) ortserve on a GPU against raw
                    ONNX Runtime on it: session.run, IO binding, CUDA graphs, FP16; exit 2 without a GPU
    judge_sim       the rollout judge in simulation: false alarms, events to catch a 2x/3x worse candidate
    learning_loop   the demo's continuous-learning loop, timed: drifted traffic to an automatic promotion
    loadgen         (``python -m benchmarks.loadgen``) the load generator on its own
    locustfile      locust users (``locust -f benchmarks/locustfile.py``); imports only ortserve

Libraries (imports point down this list; none imports a script, nor ``tests``):
    common          benchmark models and configs, publish, raw ONNX Runtime timing, machine,
                    RESULTS.md sections
    loadgen         results -> loops -> senders, server_metrics: closed/open loop, /metrics
    sweep           one curve: a concurrency sweep of closed-loop points; one point with the server's
                    CPU per request  (common, loadgen, peers_report)
    profiling       py-spy at one load point  (common, loadgen, sweep)
    overload        open loop at a multiple of capacity, memory, recovery  (common, loadgen)
    compare_report  bench_compare's RESULTS.md section  (common)
    compare_plots   bench_compare's plots  (compare_report)
    peers_report    bench_peers' rows and RESULTS.md section  (common)
    peers           MLServer as a peer and Triton's perf_analyzer, each in its own virtual environment;
                    the grpc.aio floor server
    minilm_onnx     all-MiniLM-L6-v2 as an ONNX graph built from its weights with numpy (no torch)
"""
