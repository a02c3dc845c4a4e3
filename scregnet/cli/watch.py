"""`watch`: retrain when new ChIP-seq priors land in an S3 bucket (see scregnet/watch.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scregnet.cli._common import FiniteRange, config_option, fail, load
from scregnet.home import home


@click.command()
@click.option(
    "--bucket", envvar="WATCH_BUCKET", required=True, help="S3 bucket with the prior files [env WATCH_BUCKET]."
)
@click.option(
    "--prefix",
    envvar="WATCH_PREFIX",
    default="",
    show_default=True,
    help="Prefix holding <dataset>/<priors>.csv|.tsv|.txt|.gmt[.gz] [env WATCH_PREFIX].",
)
@click.option(
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL_S3",
    default=None,
    help="S3-compatible endpoint (MinIO, moto) [env AWS_ENDPOINT_URL_S3].",
)
@click.option(
    "--expression-root",
    envvar="SCREGNET_DATA_DIR",
    type=click.Path(path_type=Path),
    required=True,
    help="DIR/<dataset>/ holds the expression: a BEELINE directory or one .h5ad [env SCREGNET_DATA_DIR].",
)
@config_option("Base run config for the triggered runs.", envvar="SCREGNET_RUN_CONFIG")
@click.option(
    "--priors-dir",
    envvar="SCREGNET_PRIORS_DIR",
    type=click.Path(path_type=Path),
    default=None,
    help="Where prior files are downloaded; must be readable by the pipeline's steps "
    "(default $SCREGNET_HOME/priors) [env SCREGNET_PRIORS_DIR].",
)
@click.option("--once", is_flag=True, help="One pass, then exit (exit 1 if a triggered run failed).")
@click.option(
    "--interval",
    type=FiniteRange(min=0, min_open=True),
    default=None,
    help="Seconds between passes (runs until stopped).",
)
@click.option(
    "--settle",
    "settle_seconds",
    type=FiniteRange(min=0),
    default=15.0,
    show_default=True,
    help="Quiet period: a dataset's newest upload must be this old (S3 server clock) and a second "
    "listing unchanged before it is trained on; fresh uploads are waited for within the pass.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=FiniteRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Per-dataset lock lease; renewed while a run is going, taken over when a watcher died.",
)
@click.option(
    "--run-timeout",
    type=FiniteRange(min=0, min_open=True),
    default=6 * 3600.0,
    show_default=True,
    help="Seconds before a run is killed.",
)
@click.option(
    "--retry-base",
    "retry_base_seconds",
    type=FiniteRange(),  # negatives: the check below names all three options
    default=15 * 60.0,
    show_default=True,
    help="After a dataset's run failed, wait this long before retrying the same priors; doubles with "
    "each consecutive failure (0: retry on every pass). New priors are trained at once.",
)
@click.option(
    "--retry-max",
    "retry_max_seconds",
    type=FiniteRange(),
    default=6 * 3600.0,
    show_default=True,
    help="Upper bound of the retry wait.",
)
@click.option(
    "--max-failures",
    type=int,
    default=8,
    show_default=True,
    help="Give up on a dataset's priors after this many consecutive failures (failed runs, refused keys, errors), "
    "until they change "
    "or --retry-failed (0: never give up).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Retry datasets in backoff or given up on now (the first pass only), as if their priors were new.",
)
def watch(
    bucket,
    prefix,
    endpoint_url,
    expression_root,
    config_file,
    priors_dir,
    once,
    interval,
    settle_seconds,
    lease_seconds,
    run_timeout,
    retry_base_seconds,
    retry_max_seconds,
    max_failures,
    retry_failed,
) -> None:
    """Train one run per dataset whose priors under s3://BUCKET/PREFIX/<dataset>/ are new or changed."""
    import os
    import signal

    from scregnet.priors_store import UnsafeKeyError, normalize_prefix
    from scregnet.watch import WatchConfig, pass_failed, pass_summary
    from scregnet.watch import watch as watch_loop

    if once == (interval is not None):
        fail("give exactly one of --once or --interval SECONDS", 2)
    if interval is not None and interval <= 0:
        fail("--interval must be positive", 2)
    if retry_base_seconds < 0 or retry_max_seconds < 0 or max_failures < 0:
        fail("--retry-base, --retry-max and --max-failures must not be negative", 2)
    try:
        normalize_prefix(prefix)
    except UnsafeKeyError as exc:
        fail(str(exc), 2)
    if config_file is not None:
        load(config_file)  # a bad base config exits 2 now, not in every triggered run
    cfg = WatchConfig(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
        expression_root=expression_root.resolve(),
        priors_dir=(priors_dir or home() / "priors").resolve(),
        run_config=config_file.resolve() if config_file else None,
        settle_seconds=settle_seconds,
        lease_seconds=lease_seconds,
        run_timeout=run_timeout,
        workdir=home() / "watch",
        retry_base_seconds=retry_base_seconds,
        retry_max_seconds=retry_max_seconds,
        max_failures=max_failures or None,
    )

    def _term(signum, frame):  # let the finally blocks stop the child run and release the lease
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)
    try:
        outcomes = watch_loop(
            cfg, once=once, interval=interval or 0.0, log=lambda m: click.echo(m), retry_failed=retry_failed
        )
    except Exception as exc:  # --once only: the listing or the state could not be read at all
        fail(f"pass failed: {type(exc).__name__}: {exc}", 1)
    click.echo(pass_summary(outcomes))
    # Backing off / given up is not a failure of this pass: no failing CronJob every 15 min.
    if pass_failed(outcomes):
        sys.exit(1)


COMMANDS = (watch,)
