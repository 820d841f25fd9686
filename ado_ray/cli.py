"""The ``ado-ray`` command: ``validate``, ``sweep``, ``train``, ``analyze`` and ``policies``.

Thin over the library: each command loads and checks its input first (one line naming the field
on bad input, exit 2), then calls one function of ``ado_ray``. Heavy modules (Ray, torch) are
imported only by the commands that run something.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

from ado_ray import __version__


def _load(args: argparse.Namespace) -> Any:
    from ado_ray.study import load_study

    return load_study(args.study).with_overrides(args.set or [])


def _cmd_validate(args: argparse.Namespace) -> int:
    from ado_ray.preflight import preflight

    print(preflight(_load(args)).plan.text())
    return 0


def _cmd_policies(args: argparse.Namespace) -> int:
    from ado_ray.policies import options_markdown, policy_class, policy_names

    if args.markdown:  # the README's tables, between their markers
        for name in policy_names():
            print(f"<!-- options:{name} -->\n{options_markdown(name)}\n<!-- /options -->\n")
        return 0
    for name in policy_names():
        cls = policy_class(name)
        print(f"{name}: {cls.describe()}  [needs: {cls.needs.describe()}]")
        for opt in cls.user_options().values():
            default = "required" if opt.required else repr(opt.default)
            print(f"  {opt.name} = {default}: {opt.describe()}; {opt.doc}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ado_ray.preflight import prepare_sweep

    # Everything is checked before Ray (and its seconds of imports) is touched.
    checked = prepare_sweep(_load(args), args.storage, args.resume, args.address)
    from ado_ray.distributed.interrupts import StudyIncomplete, StudyInterrupted
    from ado_ray.distributed.progress import CapturedOutput
    from ado_ray.distributed.sweep import run_sweep

    print(checked.plan.text(), flush=True)
    log_path = _log_path(checked.results_uri, "sweep")
    print(f"full log: {log_path}", flush=True)
    with CapturedOutput(log_path, verbose=args.verbose) as captured:
        try:
            results = run_sweep(
                checked.study,
                address=args.address,
                checked=checked,
                progress_out=captured.terminal,
            )
            last, code = results, 0
        except (StudyInterrupted, StudyIncomplete) as stopped:
            last, code = str(stopped), stopped.exit_code
        finally:
            _quiet_ray()
    print(last, flush=True)  # the last line: the results, or what happened and what to do
    return code


def _log_path(results_uri: str, command: str) -> str:
    """Where a command's full log goes: under the results directory when it is local, else
    under ./ado_ray_logs (an object store has no appendable files)."""
    from ado_ray import storage

    stamp = time.strftime("%Y%m%d-%H%M%S")
    if storage.scheme(results_uri) in ("", "file"):
        root = storage.resolve(results_uri)[1]
        return os.path.join(root, "logs", f"{command}-{stamp}.log")
    return os.path.abspath(os.path.join("ado_ray_logs", f"{command}-{stamp}.log"))


def _quiet_ray() -> None:
    """Shut Ray down, so that no late worker or raylet log line lands after ours."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()


def _format_summary(record: dict[str, Any]) -> str:
    summary = record["summary"]
    domains = record["domains"]
    entropy = record.get("entropy_rate") or [None] * len(domains)
    last = record["steps"][-1]["weights"] if record.get("steps") else [float("nan")] * len(domains)
    passes = summary.get("passes", {})
    rows = [f"{'domain':<16} {'val_loss':>9} {'floor':>7} {'weight':>7} {'passes':>7}"]
    for i, d in enumerate(domains):
        floor = "" if entropy[i] is None else f"{entropy[i]:.3f}"
        rows.append(
            f"{d:<16} {summary['val_loss'][d]:>9.4f} {floor:>7} {last[i]:>7.3f} "
            f"{passes.get(d, float('nan')):>7.2f}"
        )
    rows.append("")
    for key in ("val_loss_balanced", "val_loss_natural", "excess_loss_balanced"):
        if summary.get(key) is not None:
            rows.append(f"{key:<22} {summary[key]:.4f}")
    rows.append(f"{'tokens_seen':<22} {summary['tokens_seen']}")
    if summary.get("eval_tokens") is not None:
        rows.append(f"{'eval_tokens':<22} {summary['eval_tokens']}")
    rows.append(f"{'tokens_per_second':<22} {summary['tokens_per_second']:.0f}")
    rows.append(
        f"{'time split (s)':<22} data {summary['time_data_s']:.2f}, compute "
        f"{summary['time_compute_s']:.2f}, policy wait {summary['time_policy_wait_s']:.2f}, "
        f"eval {summary['time_eval_s']:.2f}, start-up {summary['time_startup_s']:.2f}"
    )
    return "\n".join(rows)


def _cmd_train(args: argparse.Namespace) -> int:
    from ado_ray import storage
    from ado_ray.distributed.runtime import init_ray
    from ado_ray.distributed.sweep import _placement
    from ado_ray.distributed.trainer import run_trial
    from ado_ray.preflight import preflight

    study = _load(args)
    label = args.arm or ("ado" if "ado" in study.arms else next(iter(study.arms)))
    if label not in study.arms:
        raise ValueError(f"--arm {label!r}: the study has arms {', '.join(study.arms)}")
    seed = study.seeds[0] if args.seed is None else args.seed
    if seed < 0:
        raise ValueError(f"--seed {seed}: allowed an integer >= 0")
    checked = preflight(study)
    cfg = study.run_config(label, study.default_arm_options(label, checked.steps), seed)
    init_ray(args.address)
    name = f"debug-{label}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = storage.join(storage.normalize(args.storage or study.storage), study.name, "debug")
    record = run_trial(cfg, name, root, _placement(study), corpus=checked.corpus)
    _quiet_ray()
    print(_format_summary(record))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from ado_ray.report import analyze

    report = analyze(
        args.results, out_dir=args.out, fmt=args.format, allow_partial=args.allow_partial
    )
    print(report.text if hasattr(report, "text") else report.table.to_string())
    print(f"report: {report.report_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ado-ray", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ado-ray {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging; sweep also shows Ray's own tables and worker logs",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a study and print its plan; runs nothing")
    p.add_argument("study", help="study YAML file or shipped study name")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study field")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("policies", help="list the policies (built-in and plugins) and options")
    p.add_argument("--markdown", action="store_true", help="print the README's options tables")
    p.set_defaults(func=_cmd_policies)

    p = sub.add_parser("sweep", help="run a whole study: searches, then the confirm phase")
    p.add_argument("study", help="study YAML file (see studies/)")
    p.add_argument("--storage", help="results/checkpoint URI; overrides the study's storage")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study field")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also show Ray's own tables and worker logs (they always go to the log file)",
    )
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("train", help="run one trial of a study locally on Ray, for debugging")
    p.add_argument("study")
    p.add_argument("--arm", help="an arm label of the study (default: ado, else the first arm)")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study field")
    p.add_argument("--storage")
    p.add_argument("--address")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("analyze", help="tables, plots and a report from a study's results")
    p.add_argument("results", help="results directory or URI (printed by sweep)")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "json"])
    p.add_argument("--out", help="where to write plots and the report")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="skip unreadable files (the report lists them) instead of failing",
    )
    p.set_defaults(func=_cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: one clear line, no traceback
        problems = getattr(exc, "errors", None) or [str(exc)]
        where = f" ({exc.source})" if getattr(exc, "source", None) else ""
        text = "; ".join(" ".join(p.split()) for p in problems)
        print(f"error: {text}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
