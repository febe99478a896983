"""Chaos harness: real faults at seeded random moments of the default pipeline, and the promises
that must hold after every recovery.

    python -m bench.chaos --faults 40 --seed 7                 # SIGKILL of the run's process group
    python -m bench.chaos --faults 40 --seed 7 --mode term     # SIGTERM (docker stop, timeout, k8s)
    python -m bench.chaos --faults 20 --seed 7 --mode tracking # the MLflow server stopped 2-60 s

It works in a disposable git + DVC copy of the project with a small configuration. An
uninterrupted ``s2s run --force`` first gives the reference: the stage timeline (fault moments
are spread over every stage in turn, at a seeded offset after the stage starts, which the run's
log says) and the champion's
predictions on probe inputs. Then, per fault: ``s2s run --force`` (every stage has work to do),
the fault at its moment, then a plain ``s2s run`` to recover, and these checks through the real
MLflow client and the file system:

  no-running       no MLflow run is left RUNNING
  one-version      at most one model version per training run
  champion-ok      the champion's decision tag says promoted
  previous-ok      when a champion was replaced, previous_champion is the one it replaced
  summary-holds    the recovery run's summary equals the registry (alias read back)
  registry-clean   no half-done alias change and no lease left behind; the project lock is free
  files-intact     no file outside the pipeline's own folders changed (a sentinel beside the
                   project included)
  same-champion    (at the end) the champion predicts what the uninterrupted run's champion did

It prints one row per fault and exits 1 if any invariant failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tasks.core.results import STAGES as RESULT_STAGES
from tasks.tracking import version_tags
from tests.projects import make_clone
from tests.services import MlflowServer, alive, bin_path, children

STAGES = list(RESULT_STAGES)
SMALL = {
    "train": {
        "max_steps": 60,
        "eval_strategy": "steps",
        "eval_steps": 10,
        "logging_steps": 5,
        "early_stopping_patience": 0,
        "load_best_model_at_end": False,
        "batch_size": 8,
    }
}
# what the pipeline writes: everything else in the project must stay byte for byte
OWN = (
    "data/processed",
    "reports",
    "artifacts",
    "mlartifacts",
    "mlflow.db",
    "runs",
    ".s2s",
    ".s2s-locks",
    "dvc.lock",
    ".dvc/tmp",
    ".dvc/cache",
    ".git",
    ".dvcignore",
)
INVARIANTS = [
    "no-running",
    "one-version",
    "champion-ok",
    "previous-ok",
    "summary-holds",
    "registry-clean",
    "files-intact",
]
PROBES = 8


def runs_and_versions(c) -> tuple[bool, bool, list]:
    """(no MLflow run left RUNNING, at most one model version per training run, the versions)."""
    runs = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
    versions = c.search_model_versions("name='s2s-default'")
    per_run: dict[str, int] = {}
    for v in versions:
        per_run[v.run_id] = per_run.get(v.run_id, 0) + 1
    return all(r.info.status != "RUNNING" for r in runs), all(n == 1 for n in per_run.values()), versions


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_file()
            and not any(rel == o or rel.startswith(o + "/") for o in OWN)
            and not rel.endswith(".gitignore")
        ):
            out[rel] = hashlib.md5(path.read_bytes()).hexdigest()
    sentinel = root.parent / "SENTINEL"
    out["../SENTINEL"] = sentinel.read_text() if sentinel.exists() else "missing"
    return out


class Harness:
    def __init__(self, work: Path, mode: str, seed: int, params: dict | None = SMALL, tiny: bool = True):
        self.work, self.mode, self.rng = work, mode, random.Random(seed)
        self.root = make_clone(work / "proj", params=params, tiny=tiny)
        (work / "SENTINEL").write_text("keep")
        self.env = {
            **os.environ,
            "S2S_ROOT": str(self.root),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PREFECT_HOME": str(work / "prefect-home"),
        }
        self.env.pop("PREFECT_API_URL", None)
        self.server = None
        if mode == "tracking":
            self.server = MlflowServer(work / "mlflow").start()
            self.env["MLFLOW_TRACKING_URI"] = self.server.url
        else:
            self.env.pop("MLFLOW_TRACKING_URI", None)
        self.baseline = snapshot(self.root)

    # -- runs --------------------------------------------------------------------------------
    def start(self, *args: str) -> tuple[subprocess.Popen, Path]:
        log = self.work / f"run-{time.monotonic_ns()}.log"
        proc = subprocess.Popen(
            [bin_path("s2s"), "run", *args],
            cwd=self.root,
            env=self.env,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return proc, log

    def run(self, *args: str, timeout: float = 900) -> tuple[int, str, float]:
        start = time.monotonic()
        proc, log = self.start(*args)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return proc.returncode, log.read_text(), time.monotonic() - start

    @staticmethod
    def durations(text: str) -> dict[str, float]:
        """Stage -> seconds, from the run's summary."""
        seconds = dict(re.findall(r"(\w+) ([\d.]+)s", text.split("stages       :", 1)[1].splitlines()[0]))
        return {s: float(seconds.get(s, 0.1)) for s in STAGES}

    # -- checks ------------------------------------------------------------------------------
    def client(self):
        from mlflow import MlflowClient

        uri = self.env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def check(self, text: str) -> dict[str, bool]:
        c = self.client()
        ok: dict[str, bool] = {}
        ok["no-running"], ok["one-version"], versions = runs_and_versions(c)
        model = c.get_registered_model("s2s-default") if versions else None
        aliases = {a: str(v) for a, v in ((model.aliases or {}).items() if model else [])}
        champion = aliases.get("champion")
        tags = version_tags.facts(c.get_model_version("s2s-default", champion)) if champion else {}
        ok["champion-ok"] = champion is None or tags.get("promotion.decision") == "promoted"
        before = tags.get("promotion.champion_before", "none")
        ok["previous-ok"] = before in ("none", champion) or aliases.get("previous_champion") == before
        said = re.search(r"gate\s+: (PROMOTED|NOT PROMOTED).*?read back: '(\w+)' = v(\d+)", text)
        version = re.search(r"model\s+: s2s-default version (\d+)", text)
        ok["summary-holds"] = bool(
            said
            and version
            and said.group(3) == champion
            and (said.group(1) != "PROMOTED" or version.group(1) == champion)
        )
        pending = (model.tags or {}) if model else {}
        ok["registry-clean"] = "s2s.pending" not in pending and "s2s.lease" not in pending and self.lock_free()
        ok["files-intact"] = snapshot(self.root) == self.baseline
        return ok

    def lock_free(self) -> bool:
        import fcntl

        path = self.root / ".s2s" / "run.lock"
        if not path.exists():
            return True
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    def predictions(self) -> list[str]:
        code = (
            "import json, sys, mlflow\n"
            "m = mlflow.pyfunc.load_model('models:/s2s-default@champion')\n"
            f"rows = [json.loads(l)['input'] for l in open(sys.argv[1])][:{PROBES}]\n"
            "print(json.dumps(m.predict(rows)))\n"
        )
        env = {
            **self.env,
            "MLFLOW_TRACKING_URI": self.env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}",
        }
        probes = self.work / "probes.jsonl"
        proc = subprocess.run([sys.executable, "-c", code, str(probes)], env=env, capture_output=True, text=True)
        if proc.returncode:
            return [f"<failed: {proc.stderr[-300:]}>"]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # -- faults ------------------------------------------------------------------------------
    def fault(self, stage: str, at: float) -> tuple[str, int | None, str]:
        """One forced run with the fault ``at`` seconds after ``stage`` started; returns (stage hit,
        the faulted run's exit status, a note)."""
        proc, log = self.start("--force")
        while proc.poll() is None and f"] {stage}: running" not in log.read_text():
            time.sleep(0.01)
        deadline = time.monotonic() + at
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        hit = "after the end"
        helpers: list[int] = []
        if proc.poll() is None:
            running = re.findall(r"\] (\w+): running", log.read_text())
            hit = running[-1] if running else "start-up"
            helpers = children(proc.pid)  # the temporary Prefect server, in a session of its own
            if self.mode == "kill":
                os.killpg(proc.pid, signal.SIGKILL)
            elif self.mode == "term":
                os.kill(proc.pid, signal.SIGTERM)
            else:
                self.server.stop()
                time.sleep(self.rng.uniform(2, 60))
                self.server.start()
        t0 = time.monotonic()
        try:
            proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        note = ""
        deadline = time.monotonic() + 10
        while any(alive(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        if any(alive(p) for p in helpers):
            note += "child process outlived the run (expected it to stop with it) "
        if self.mode == "term" and hit != "after the end":
            note += f"stopped in {time.monotonic() - t0:.1f} s"
            if proc.returncode != 143 or time.monotonic() - t0 > 30:
                tail = " | ".join(log.read_text().strip().splitlines()[-6:])
                note += f" (expected 143 within 30 s); its last lines: {tail[-1500:]}"
        return hit, proc.returncode, note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=6, help="number of faults (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mode", choices=("kill", "term", "tracking", "mixed"), default="kill", help="mixed: kill and term in turn"
    )
    parser.add_argument("--stages", default=",".join(STAGES), help="stages the faults cycle through")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="s2s-chaos-"))
    h = Harness(work, "kill" if args.mode == "mixed" else args.mode, args.seed)
    failures = 0
    try:
        rc, text, total = h.run("--force")
        if rc != 0:
            sys.exit(f"the uninterrupted reference run failed ({rc}):\n{text[-3000:]}")
        (work / "probes.jsonl").write_text((h.root / "reports" / "predictions.jsonl").read_text())
        reference = h.predictions()
        stages = h.durations(text)
        print(
            f"chaos: mode {args.mode}, {args.faults} faults, seed {args.seed}; reference run {total:.1f} s "
            f"({', '.join(f'{s} {d:.1f}s' for s, d in stages.items())})"
        )
        header = f"{'#':>3}  {'planned':9} {'+s':>6}  {'hit':13} {'rc':>4}  {'re-run':>6}  " + "  ".join(INVARIANTS)
        print(header)
        print("-" * len(header))
        for i in range(args.faults):
            chosen = [x for x in args.stages.split(",") if x in STAGES] or STAGES
            planned = chosen[i % len(chosen)]
            at = h.rng.uniform(0, stages[planned])  # seconds into the stage
            if args.mode == "mixed":
                h.mode = ("kill", "term")[i % 2]
            hit, rc, note = h.fault(planned, at)
            rerun, text, _ = h.run()
            ok = h.check(text)
            ok["rerun-ok"] = rerun in (0, 3)
            failures += sum(not v for v in ok.values()) + ("expected" in note)
            marks = "  ".join(("ok" if ok[k] else "FAIL").center(len(k)) for k in INVARIANTS)
            print(
                f"{i + 1:>3}  {planned:9} {at:6.1f}  {hit:13} {rc if rc is not None else '-':>4}  "
                f"{rerun:>6}  {marks}  {note}" + ("" if ok["rerun-ok"] else f"  re-run failed: {text[-300:]!r}"),
                flush=True,
            )
        final = h.predictions()
        same = final == reference
        failures += not same
        print(
            f"same-champion: the final champion's {PROBES} probe predictions "
            f"{'equal' if same else 'DIFFER FROM'} the uninterrupted run's"
        )
        print(f"violations: {failures}")
    finally:
        if h.server is not None:
            h.server.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
