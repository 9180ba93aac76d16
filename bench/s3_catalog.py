"""The catalog on S3 (factory/catalog/s3.py) against a local S3 API: moto's server on loopback.

Two things, each measured side by side in one run:

- operations: `factory promote img-00 V --to dev` and `factory resolve img-00 --json` through
  factory.cli.main.main_inner in one measuring child, alternating run by run between the local
  directory catalog of a checkout and a copy of the same catalog under an S3 prefix
  (`--catalog s3://… --endpoint-url …`), at 100 and 1,000 versions (bench/query_scale.py's
  generator). The S3 figure is divided by the local one measured next to it. Both sides are
  warm (the index's schema check remembered, boto3's service models loaded); each S3 command
  still makes its own boto3 client, as a `factory` command does.
- concurrency: WRITERS processes, each publishing PER_WRITER versions of its own image and
  promoting each to `dev` right after (2 catalog updates a version), started at the same moment
  on a fresh S3 prefix, against one process doing the same updates in turn on another fresh
  prefix. Every writer imports and opens the catalog first and waits for a go file, so that
  interpreter start-up is not timed; the time is from the go to the last writer's last update.
  Lost races are counted from the writers' "re-applying" notes; afterwards a child checks that
  no update was lost (generation == updates, every version published, every promotion in the
  history in order, the catalog audits clean). A lost update is a measurement failure (exit 2).

Only loopback traffic: the server listens on 127.0.0.1, the factory refuses any other endpoint
(factory.core.awsapi.AwsTarget) and the children get fake credentials and no proxy settings.

    .venv/bin/python bench/run.py --only s3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script (a child)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import BenchError, log, spawn, tool_env
from bench.run import Row, Summary, summarize
from bench.world import indexed_entry
from bench.world import one_package_manifest as manifest

if TYPE_CHECKING:
    from bench.run import Report

BENCH = Path(__file__).resolve().parent
SIZES = (100, 1000)
IMAGES = 20  # query_scale's default: the versions are spread over 20 images
PACKAGES = 3
IMAGE = "img-00"
BUCKET = "bench-catalog"
WRITERS = 4
PER_WRITER = 8  # versions each writer publishes and promotes: 2 updates each
ORDER = ("dev", "staging", "prod")
# WriterV3.update's note when the conditional put of catalog.json lost (factory/catalog/v3/writer.py).
REAPPLY_NOTE = "another writer committed first; re-applying"
REAPPLY_ATTEMPT = re.compile(re.escape(REAPPLY_NOTE) + r" \((?P<attempt>\d+)\)")
# After its attempt-th lost race a writer sleeps uniform(0, min(4, 0.05 x 2^attempt)) s
# (factory.catalog.v3.writer.backoff): half that on average.
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.05, 4.0

# The goals, as ratios of figures measured side by side (see README.md for the reasons).
PROMOTE_GOAL = 1.25  # S3 promote at the largest size, over the local one
RESOLVE_GOAL = 2.0  # S3 `resolve --json` at the largest size, over the local one
RACE_GOAL = 1.5  # WRITERS writers at once, over one process doing the same updates in turn

# Fake credentials, never valid anywhere (as tests/aws_server.py's).
ACCESS_KEY = "AKIAFACTORYBENCHKEY1"
SECRET_KEY = "factory-bench-secret-5d1e7a9c3b2f"  # noqa: S105 -- fake, for moto only


def aws_env(url: str) -> dict[str, str]:
    """What a child needs to reach the local server through the standard credential chain."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,  # botocore >= 1.31 sends clients without an endpoint here
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


# -- the pure parts --------------------------------------------------------------------------


def lost_races(output: str) -> int:
    """How many times a writer lost the race for the index and re-applied its change."""
    return sum(REAPPLY_NOTE in line for line in output.splitlines())


def backoff_estimate_s(output: str) -> float:
    """The writers' sleep after their lost races, on average (the jitter itself is random)."""
    return sum(mean_backoff_s(int(m["attempt"])) for m in REAPPLY_ATTEMPT.finditer(output))


def mean_backoff_s(attempt: int) -> float:
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)) / 2


@dataclass(frozen=True, kw_only=True)
class RaceCheck:
    """What the catalog holds after a race, against what the writers did."""

    updates: int  # the catalog updates the writers made (each a publish or a promote)
    generation: int
    missing_versions: int
    missing_promotions: int
    audit_problems: int
    failed_writers: int
    first_problem: str = ""  # the audit's first, said in ``problem``

    @classmethod
    def from_json(cls, data: Mapping[str, Any], failed_writers: int = 0) -> RaceCheck:
        return cls(
            updates=int(data["updates"]),
            generation=int(data["generation"]),
            missing_versions=len(data["missing_versions"]),
            missing_promotions=len(data["missing_promotions"]),
            audit_problems=len(data["audit_problems"]),
            failed_writers=failed_writers,
            first_problem=str(next(iter(data["audit_problems"]), "")),
        )

    @property
    def lost_updates(self) -> int:
        """Updates the writers made that the catalog does not show."""
        return max(self.missing_versions + self.missing_promotions, self.updates - self.generation, 0)

    @property
    def intact(self) -> bool:
        return (
            self.lost_updates == 0
            and self.generation == self.updates
            and self.audit_problems == 0
            and self.failed_writers == 0
        )

    def problem(self) -> str:
        """Why the race is not intact, in one line ('' when it is)."""
        parts = []
        if self.failed_writers:
            parts.append(f"{self.failed_writers} writer(s) failed")
        if self.generation != self.updates:
            parts.append(f"generation {self.generation}, expected {self.updates}")
        if self.missing_versions:
            parts.append(f"{self.missing_versions} version(s) missing")
        if self.missing_promotions:
            parts.append(f"{self.missing_promotions} promotion(s) missing")
        if self.audit_problems:
            parts.append(f"{self.audit_problems} audit problem(s), the first: {self.first_problem}")
        return "; ".join(parts)


def ratios(over: Sequence[float], under: Sequence[float]) -> list[float]:
    """Pair by pair: each measurement divided by the one taken next to it."""
    return [a / b for a, b in zip(over, under, strict=True)]


def ms(values: Sequence[float]) -> Summary:
    return summarize(v * 1000 for v in values)


def op_rows(per_size: Mapping[int, Mapping[str, Sequence[float]]]) -> list[Row]:
    """Per size and operation: local ms, S3 ms, S3/local; the goal at the largest size."""
    rows: list[Row] = []
    largest = max(per_size)
    goals = {"promote": PROMOTE_GOAL, "resolve": RESOLVE_GOAL}
    names = {"promote": "promote", "resolve": "`resolve --json`"}
    for op in ("promote", "resolve"):
        for size in sorted(per_size):
            times = per_size[size]
            local, s3 = times[f"{op}_local"], times[f"{op}_s3"]
            ratio = summarize(ratios(s3, local))
            checked = size == largest
            rows += [
                Row(figure=f"{names[op]} at {size:,} versions, local (in-process)", summary=ms(local),
                    unit="ms", digits=0),
                Row(figure=f"{names[op]} at {size:,} versions, S3 (in-process)", summary=ms(s3),
                    unit="ms", digits=0),
                Row(figure=f"{names[op]} at {size:,} versions: S3 / local", summary=ratio,
                    goal=f"≤ {goals[op]}" if checked else "",
                    met=ratio.median <= goals[op] if checked else None),
            ]  # fmt: skip
    return rows


def race_rows(
    concurrent_s: Sequence[float],
    sequential_s: Sequence[float],
    races: Sequence[int],
    lost: Sequence[int],
    backoff_s: Sequence[float] = (),
) -> list[Row]:
    updates = WRITERS * PER_WRITER * 2
    ratio = summarize(ratios(concurrent_s, sequential_s))
    rows = [
        Row(figure=f"S3: {WRITERS} writers at once, {updates} updates in all",
            summary=summarize(concurrent_s), unit="s"),
        Row(figure=f"S3: 1 process, the same {updates} updates in turn", summary=summarize(sequential_s),
            unit="s"),
        Row(figure=f"S3: {WRITERS} writers / 1 process (same updates)", summary=ratio,
            goal=f"≤ {RACE_GOAL}", met=ratio.median <= RACE_GOAL),
        Row(figure=f"S3: lost races (changes re-applied) of {updates} updates", summary=summarize(races),
            digits=0),
        Row(figure=f"S3: lost updates of {updates} (concurrent and sequential)", summary=summarize(lost),
            goal="= 0 (else exit 2)", met=max(lost) == 0, digits=0),
    ]  # fmt: skip
    if backoff_s:
        per_writer = summarize(b / WRITERS for b in backoff_s)
        figure = "S3: back-off sleep after lost races, per writer (est.: its mean per attempt)"
        rows.insert(4, Row(figure=figure, summary=per_writer, unit="s"))
    return rows


# -- entries the writers publish (as tests/integration/catalog_fixture.py's) ------------------


def writer_image(writer: int) -> str:
    return f"w{writer}"


# -- the children ----------------------------------------------------------------------------


def upload(catalog_dir: Path, url: str, endpoint: str) -> int:
    """Copy a local catalog's files under an S3 prefix (catalog.json last); returns how many."""
    from factory.catalog import s3 as s3catalog  # noqa: PLC0415 -- the child only
    from factory.core import awsapi as aws  # noqa: PLC0415

    bucket, prefix = s3catalog.split(url)
    s3: Any = aws.client(aws.AwsTarget(endpoint), "s3", s3catalog.region())
    with contextlib.suppress(Exception):  # already there: the second size reuses the bucket
        s3.create_bucket(Bucket=bucket)
    files = sorted(p for p in catalog_dir.rglob("*") if p.is_file() and p.name != ".lock")
    files.sort(key=lambda p: p.name == "catalog.json")
    for path in files:
        key = f"{prefix}/{path.relative_to(catalog_dir).as_posix()}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return len(files)


def measure(checkout: Path, url: str, endpoint: str, repeat: int) -> dict[str, Any]:
    """Promote and `resolve --json`, local and S3 in turn, through the CLI in-process."""
    from factory.catalog.store import Catalog  # noqa: PLC0415 -- the child only
    from factory.cli.main import main_inner  # noqa: PLC0415
    from factory.core.config import Layout  # noqa: PLC0415

    layout = Layout.discover(checkout)
    uploaded = upload(layout.catalog, url, endpoint)
    versions = [v["version"] for v in Catalog(layout.catalog, layout.keys).versions(IMAGE)]  # newest first
    where = {"local": [], "s3": ["--catalog", url, "--endpoint-url", endpoint]}

    def cli(side: str, *args: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main_inner(["--root", str(checkout), *where[side], *args])
        if code != 0:
            raise BenchError(f"factory {' '.join(args)} ({side}) exited {code}")
        return out.getvalue()

    def resolve(side: str) -> None:
        found = json.loads(cli(side, "resolve", IMAGE, "--json"))
        if versions[0] not in json.dumps(found):
            raise BenchError(f"resolve ({side}) did not answer the newest version {versions[0]}")

    for side in where:  # warm-up: the first schema check, boto3's models; dev gets a version
        cli(side, "promote", IMAGE, versions[-1], "--to", "dev")
        resolve(side)
    times: dict[str, list[float]] = {f"{op}_{s}": [] for op in ("promote", "resolve") for s in where}
    for n in range(repeat):
        target = versions[n % (len(versions) - 1)]
        for side in where if n % 2 == 0 else reversed(where):
            start = time.perf_counter()
            cli(side, "promote", IMAGE, target, "--to", "dev")
            times[f"promote_{side}"].append(time.perf_counter() - start)
            start = time.perf_counter()
            resolve(side)
            times[f"resolve_{side}"].append(time.perf_counter() - start)
    catalog_mib = sum(p.stat().st_size for p in layout.catalog.rglob("*") if p.is_file()) / 2**20
    return {
        "times_s": times,
        "uploaded_files": uploaded,
        "catalog_mib": catalog_mib,
        "versions": len(versions),
    }


def write(args: argparse.Namespace) -> dict[str, float]:
    """One writer: publish and promote each of its versions, after the go file appears."""
    from factory.catalog import lifecycle, publishing, trust  # noqa: PLC0415
    from factory.catalog.store import open_catalog  # noqa: PLC0415
    from factory.core import awsapi as aws  # noqa: PLC0415

    catalog = open_catalog(args.url, args.keys, aws.AwsTarget(args.endpoint))
    signer = trust.load_signer(args.key)
    junit = args.scratch / f"junit-{os.getpid()}.xml"
    junit.write_text('<testsuite tests="1"><testcase classname="t" name="t"/></testsuite>\n')
    writers = [int(w) for w in args.writers.split(",")]
    (args.ready / str(os.getpid())).touch()
    while not args.go.exists():
        time.sleep(0.005)
    start = time.time()
    for index in range(1, args.count + 1):
        for writer in writers:  # one writer: its own image; in turn: round robin over all
            image, actor = writer_image(writer), f"writer{writer}"
            data = indexed_entry(image, index)
            publishing.publish(catalog, data, manifest(data), junit, signer=signer, actor=actor)

            def promote(txn: lifecycle.Writing, image: str = image, version: str = data.version) -> None:
                lifecycle.promote(txn, catalog, ORDER, image=image, version=version, channel="dev")

            lifecycle.update(catalog, signer, actor, promote)
    return {"start": start, "end": time.time()}


def check(url: str, keys: Path, endpoint: str, writers: int, count: int) -> dict[str, Any]:
    """What the catalog shows after a race, against what the writers did."""
    from factory.catalog import audit  # noqa: PLC0415
    from factory.catalog.indexdoc import image_of  # noqa: PLC0415
    from factory.catalog.store import open_catalog  # noqa: PLC0415
    from factory.core import awsapi as aws  # noqa: PLC0415 -- the child only

    catalog = open_catalog(url, keys, aws.AwsTarget(endpoint))
    doc = catalog.load()
    missing_versions: list[str] = []
    missing_promotions: list[str] = []
    for writer in range(writers):
        image = writer_image(writer)
        wanted = [indexed_entry(image, n).version for n in range(1, count + 1)]
        have = {e["version"] for e in image_of(doc, image)["versions"]}
        missing_versions += [f"{image} {v}" for v in wanted if v not in have]
        promoted = [
            r["to"]
            for r in doc["history"]
            if r["image"] == image and r["action"] == "promote" and r["channel"] == "dev"
        ]
        if promoted != wanted:
            missing_promotions += [f"{image} {v}" for v in wanted if v not in promoted] or [f"{image} order"]
    return {
        "updates": writers * count * 2,
        "generation": doc["generation"],
        "missing_versions": missing_versions,
        "missing_promotions": missing_promotions,
        "audit_problems": list(audit.verify(catalog).problems),
    }


# -- the parent ------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """moto's S3 API on 127.0.0.1, started as the tests start it (tests/aws_server.py); yields its URL."""
    from tests import aws_server  # noqa: PLC0415 -- the parent only: the measuring child stays lean

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(aws_server.moto_server(log_path, env=tool_env()))
        except aws_server.ServerError as exc:
            raise BenchError(str(exc)) from None
        yield server.url


def build(root: Path, versions: int) -> tuple[Path, Path, float]:
    argv = (
        sys.executable, str(BENCH / "query_scale.py"),
        "--images", str(IMAGES), "--versions", str(max(1, versions // IMAGES)),
        "--packages", str(PACKAGES), "--build", str(root),
    )  # fmt: skip
    child = spawn(argv, cwd=root, env=tool_env())
    made = json.loads(child.stdout)
    return Path(made["checkout"]), Path(made["key"]), child.seconds


@dataclass(frozen=True, kw_only=True)
class Race:
    seconds: float
    lost_races: int
    backoff_s: float  # estimated, summed over the writers
    check: RaceCheck


def race(
    url: str,
    scratch: Path,
    *,
    endpoint: str,
    checkout: Path,
    key: Path,
    env: Mapping[str, str],
    at_once: bool,
) -> Race:
    """WRITERS writer processes at once (``at_once``), or one process doing all their updates."""
    scratch.mkdir(parents=True)
    ready, go = scratch / "ready", scratch / "go"
    ready.mkdir()
    groups = [str(w) for w in range(WRITERS)] if at_once else [",".join(str(w) for w in range(WRITERS))]
    argv = [sys.executable, str(Path(__file__)), "write", url, str(checkout / "keys"), str(key), endpoint,
            "--count", str(PER_WRITER), "--scratch", str(scratch), "--ready", str(ready),
            "--go", str(go)]  # fmt: skip
    procs = []
    outs = []
    for n, group in enumerate(groups):
        out, err = (scratch / f"writer-{n}.out").open("w+"), (scratch / f"writer-{n}.err").open("w+")
        outs.append((out, err))
        procs.append(
            subprocess.Popen(
                [*argv, "--writers", group], cwd=checkout, env=dict(env), stdout=out, stderr=err
            )
        )
    try:
        deadline = time.monotonic() + 300
        while len(list(ready.iterdir())) < len(procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise BenchError(f"a writer did not get ready: {_tails(outs)}")
            time.sleep(0.02)
        go.touch()
        codes = [p.wait(timeout=1200) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    stderr, spans = "", []
    for (out, err), code in zip(outs, codes, strict=True):
        out.seek(0)
        err.seek(0)
        text = err.read()
        stderr += text
        if code == 0:
            spans.append(json.loads(out.read()))
        out.close()
        err.close()
    failed = sum(code != 0 for code in codes)
    if failed:
        log(f"s3: {failed} writer(s) failed:\n{stderr[-3000:]}")
    checked = spawn(
        [sys.executable, str(Path(__file__)), "check", url, str(checkout / "keys"), endpoint,
         "--writers", str(WRITERS), "--count", str(PER_WRITER)],
        cwd=checkout, env=env,
    )  # fmt: skip
    seconds = max(s["end"] for s in spans) - min(s["start"] for s in spans) if spans else float("nan")
    return Race(
        seconds=seconds,
        lost_races=lost_races(stderr),
        backoff_s=backoff_estimate_s(stderr),
        check=RaceCheck.from_json(json.loads(checked.stdout), failed_writers=failed),
    )


def _tails(outs: Sequence[tuple[Any, Any]]) -> str:
    texts = []
    for _, err in outs:
        err.seek(0)
        texts.append(err.read()[-1000:])
    return "\n".join(texts)


def s3(report: Report, *, repeat: int, sizes: Sequence[int] = SIZES, keep: bool) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    per_size: dict[int, dict[str, Any]] = {}
    races: dict[str, list[Race]] = {"concurrent": [], "sequential": []}
    try:
        with moto_server(scratch / "moto.log") as endpoint:
            checkout = key = None
            for size in sizes:
                root = scratch / str(size)
                root.mkdir()
                checkout, key, setup_s = build(root, size)
                env = tool_env({"FACTORY_SIGNING_KEY": str(key), **aws_env(endpoint)})
                url = f"s3://{BUCKET}/ops-{size}"
                argv = [sys.executable, str(Path(__file__)), "measure", str(checkout), url, endpoint,
                        "--repeat", str(repeat)]  # fmt: skip
                child = spawn(argv, cwd=checkout, env=env)
                per_size[size] = json.loads(child.stdout) | {"setup_s": setup_s, "measure_s": child.seconds}
                log(f"s3 {size:,} versions: built in {setup_s:.0f}s, measured in {child.seconds:.0f}s")
            assert checkout is not None and key is not None
            env = tool_env({"FACTORY_SIGNING_KEY": str(key), **aws_env(endpoint)})
            for n in range(repeat):
                for kind in ("concurrent", "sequential") if n % 2 == 0 else ("sequential", "concurrent"):
                    url = f"s3://{BUCKET}/race-{n}-{kind}"
                    found = race(url, scratch / f"race-{n}-{kind}", endpoint=endpoint, checkout=checkout,
                                 key=key, env=env, at_once=kind == "concurrent")  # fmt: skip
                    races[kind].append(found)
                    log(f"s3 race {n} {kind}: {found.seconds:.1f}s, {found.lost_races} lost races, "
                        f"{found.check.lost_updates} lost updates")  # fmt: skip
    finally:
        if keep:
            log(f"s3 scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    report.rows += op_rows({n: f["times_s"] for n, f in per_size.items()})
    every = races["concurrent"] + races["sequential"]
    report.rows += race_rows(
        [r.seconds for r in races["concurrent"]],
        [r.seconds for r in races["sequential"]],
        [r.lost_races for r in races["concurrent"]],
        [r.check.lost_updates for r in every],
        [r.backoff_s for r in races["concurrent"]],
    )
    report.sections["s3"] = {
        "sizes": {str(n): f for n, f in per_size.items()},
        "races": {k: [{"seconds": r.seconds, "lost_races": r.lost_races, "backoff_s": r.backoff_s,
                       **vars(r.check)} for r in v] for k, v in races.items()},
        "writers": WRITERS,
        "per_writer": PER_WRITER,
        "goals": {"promote": PROMOTE_GOAL, "resolve": RESOLVE_GOAL, "race": RACE_GOAL},
    }  # fmt: skip
    broken = [r.check.problem() for r in every if not r.check.intact]
    if broken:  # the rows stay in the report; the section counts as failed (exit 2)
        raise BenchError(f"updates lost on S3: {' | '.join(broken)}")


# -- the children's command line -------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="the children of bench/run.py's s3 section")
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure")
    m.add_argument("checkout", type=Path)
    m.add_argument("url")
    m.add_argument("endpoint")
    m.add_argument("--repeat", type=int, default=3)
    w = sub.add_parser("write")
    w.add_argument("url")
    w.add_argument("keys", type=Path)
    w.add_argument("key", type=Path)
    w.add_argument("endpoint")
    w.add_argument("--writers", required=True, help="comma-separated writer numbers")
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--scratch", type=Path, required=True)
    w.add_argument("--ready", type=Path, required=True)
    w.add_argument("--go", type=Path, required=True)
    c = sub.add_parser("check")
    c.add_argument("url")
    c.add_argument("keys", type=Path)
    c.add_argument("endpoint")
    c.add_argument("--writers", type=int, required=True)
    c.add_argument("--count", type=int, required=True)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.what == "measure":
        found: Mapping[str, Any] = measure(args.checkout, args.url, args.endpoint, args.repeat)
    elif args.what == "write":
        found = write(args)
    else:
        found = check(args.url, args.keys, args.endpoint, args.writers, args.count)
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
