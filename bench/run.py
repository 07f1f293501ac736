"""Benchmark tidings against its peers, on this machine, in one run.

    .venv/bin/python bench/run.py --quick    a few minutes (results in bench/.work/)
    .venv/bin/python bench/run.py            full: bench/results.json, docs/benchmarks.md + .png
    .venv/bin/python bench/run.py --smoke    CI: tiny sizes; exit 0 when every scenario ran

Scenarios (``--only`` takes their names): 1 ``fanout-kafka``, 2 ``channels``, 3 ``publish``,
4 ``consume``, 5 ``memory``, 6 ``fanout-memory``, 7 and 8 ``scaling`` (the Kafka gateway with
1 and 2 workers), 9 ``fanout-pusher`` (scenario 6's fan-out, tidings' protocol vs Pusher's on
one gateway), 10 ``cluster`` (three Kafka gateways against ``bench/model.py``). The harness
installs the pinned peers of bench/requirements.txt into this interpreter's environment,
builds the Go load generator, and starts Kafka with scripts/kafka if nothing answers on the
brokers. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the harness as the package "bench"
    _root = Path(__file__).resolve().parent.parent
    sys.path[:1] = [str(_root)]

from bench import environment  # stdlib only: this runs before the peers are installed

SCENARIOS = ("fanout-kafka", "channels", "publish", "consume", "memory", "fanout-memory", "scaling",
             "fanout-pusher", "cluster")
NEEDS_KAFKA = {"fanout-kafka", "channels", "publish", "consume", "scaling", "cluster"}
QUIET = 0.15
"""Share of the CPU other processes may use when a scenario starts (an idle Kafka uses ~2 %)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2],
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--only", help=f"comma list of scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the tidings gateway in the saturation runs (fan-out at 1,000 "
                        "connections, many channels)")
    parser.add_argument("--brokers", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--out", type=Path,
                        help="where results go (default: the published files in full mode, "
                        "bench/.work/ otherwise)")
    parser.add_argument("--keep-topics", action="store_true", help="keep this run's topics")
    parser.add_argument("--wait-quiet", type=float, metavar="SECONDS",
                        help="wait up to this long for other processes to leave the CPU idle "
                        "before each scenario (default 120, 0 with --smoke; a busy machine is "
                        "noted in the report)")
    args = parser.parse_args(argv)
    chosen = SCENARIOS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {SCENARIOS}")
    args.scenarios = [name for name in SCENARIOS if name in chosen]
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.smoke else 120.0
    return args


def raise_open_files_limit() -> None:
    """Children inherit the limit: 10,000 sockets on each side need it near the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def output_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    if args.out is not None:
        base = args.out
        return base / "results.json", base / "benchmarks.md", base / "benchmarks.png"
    if args.mode == "full" and args.scenarios == list(SCENARIOS):
        docs = environment.ROOT / "docs"
        return environment.BENCH / "results.json", docs / "benchmarks.md", docs / "benchmarks.png"
    base = environment.WORK / f"{args.mode}"
    return base / "results.json", base / "benchmarks.md", base / "benchmarks.png"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    environment.ensure_requirements()
    loadgen = environment.ensure_loadgen()
    raise_open_files_limit()

    from bench.core import Context, Results
    from bench.plan import PLANS
    from bench.procs import Processes, can_pin, terminate_on_signals, wait_until_quiet
    from bench.report import terminal_table, write
    from bench.scenarios import channels, cluster, fanout, kafka_clients, memory, pusher, scaling
    from bench.systems import delete_topics

    runners: dict[str, Callable[[Context], None]] = {
        "fanout-kafka": lambda ctx: fanout.run(ctx, "kafka"),
        "channels": channels.run,
        "publish": kafka_clients.run_publish,
        "consume": kafka_clients.run_consume,
        "memory": memory.run,
        "fanout-memory": lambda ctx: fanout.run(ctx, "memory"),
        "scaling": scaling.run,
        "fanout-pusher": pusher.run,
        "cluster": cluster.run,
    }
    plan = PLANS[args.mode]
    pin = can_pin()
    results = Results()
    started = time.time()
    results.meta = {
        "mode": args.mode,
        "scenarios": args.scenarios,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "plan": dataclasses.asdict(plan),
        "machine": environment.machine(),
        "pinning": (
            "The system under test (the tidings gateway, the Socket.IO server, or the publish "
            "or consume worker) ran on core 0 (`taskset -c 0`); the load generator and the "
            "publishers on core 1. Kafka (one JVM) was not pinned and floats over both cores, "
            "competing with both sides for the Kafka scenarios."
            if pin else "Nothing was pinned (taskset missing or fewer than two cores)."
        ),
    }
    needs_kafka = bool(NEEDS_KAFKA & set(args.scenarios))
    started_kafka = False
    if needs_kafka and not environment.kafka_reachable(args.brokers):
        if args.brokers != "127.0.0.1:9092":
            raise SystemExit(f"bench: Kafka does not answer on {args.brokers}")
        environment.start_local_kafka()
        started_kafka = True
    failed: list[str] = []
    work = environment.WORK / "runs" / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    snapshot = environment.snapshot_tidings(work)
    sys.path.insert(0, str(snapshot))  # this process too (tokens, envelopes) uses the copy
    results.meta["machine"]["source_digest"] = environment.source_digest(snapshot)
    interrupted = False
    try:
        with terminate_on_signals(), Processes(work / "logs", pin=pin) as procs:
            ctx = Context(plan=plan, procs=procs, loadgen=loadgen, brokers=args.brokers,
                          work=work, results=results, pin=pin, profile=args.profile,
                          snapshot=snapshot)
            try:
                for name in args.scenarios:
                    ctx.log(f"== {name} ({args.mode})")
                    busy = wait_until_quiet(QUIET, args.wait_quiet)
                    results.meta.setdefault("background_cpu", {})[name] = round(busy, 3)
                    if busy > QUIET:
                        results.problem(
                            f"the machine was busy before {name}: {busy:.0%} of its CPU was in "
                            "use by other processes; its figures include their interference"
                        )
                    try:
                        runners[name](ctx)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        failed.append(name)
                        results.problem(f"scenario {name} did not finish: {exc}")
                        traceback.print_exc()
                    finally:
                        procs.stop_all()
            finally:
                if needs_kafka and not args.keep_topics:
                    with contextlib.suppress(Exception):
                        deleted = delete_topics(args.brokers, ctx.topics)
                        ctx.log(f"deleted {deleted} topics of this run")
    except KeyboardInterrupt:
        interrupted = True
        print("\nbench: interrupted; every process it started was stopped", file=sys.stderr)
    finally:
        if started_kafka:
            environment.stop_local_kafka()
    finished = time.time()
    results.meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(finished))
    results.meta["minutes"] = (finished - started) / 60
    results.meta["failed"] = failed
    results.meta["logs"] = str(work)
    if interrupted:
        return 130
    json_path, markdown_path, chart_path = output_paths(args)
    write(results, json_path, markdown_path, chart_path)
    print(terminal_table(results))
    print(f"\nbench: {args.mode} run took {results.meta['minutes']:.1f} min; results in "
          f"{json_path}, report {markdown_path}, chart {chart_path}; logs in {work}")
    if failed:
        print(f"bench: scenario(s) that did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
