"""A month of nights: nightly retrains of a small model with new data, real faults, approvals and
a rollback, and the promises checked after every night.

    python -m bench.soak --nights 30 --seed 11

It works in a disposable git + DVC copy of the project (the shipped settings) against
a real MLflow server on 127.0.0.1, with certified gates (paired bootstrap, 95%). Each night writes
the day's data into ``ingest.source`` and runs the ``retrain`` flow a deployment's schedule starts
(bench/_night.py, under a temporary Prefect server): it trains only on new settings or drifted
data, so most quiet nights are skipped. The calendar, from ``--seed``:

  data       every night adds rows from the same distribution (quiet), or, about one night in
             three, rows of one kind of event, two reports to a row (drifting: twice the length);
             one night the file is bad (a third
             of its targets blank: validation must refuse it); the next night is good again
  settings   one night changes train.lr in params.yaml (a new settings hash must train)
  faults     about one night in three: the night's process group SIGKILLed (a worker dying with
             its flow), SIGTERMed (docker stop), or the MLflow server stopped 2-30 s, at a random
             moment; a killed or stopped night is run again, as the deployment's retry would
  approval   two nights require a person (and not a beaten champion, so that they ask): one is
             approved and one rejected with `s2s approve` while the flow run waits; when the gates
             refuse a night's candidate before anyone is asked, the answer is owed to the next
             night without a fault, bad file or rollback (its gates changed, so it trains), until
             a person is asked
  rollback   one night ends with `s2s rollback`

After every night, through the real MLflow client, the project's CLI and the file system:

  no-running      no MLflow run is left RUNNING
  one-champion    the champion alias names one version, tagged promoted (or restored by rollback)
  no-duplicate    at most one model version per training run
  history-ok      `s2s history --verify` holds (every hash and link, and the live alias)
  registry-clean  no half-done alias change, no lease, the project lock free
  oracle          a version that became champion beat the one before on the same rows: an
                  independent paired bootstrap (fixed seed) over the evaluation's per-row scores
                  puts the primary metric's gain above zero; and the bad-data night changed nothing
  files-intact    no file outside the pipeline's own folders changed (a sentinel beside it included)

It prints one row per night and a total, and exits 1 if any promise failed.
"""

from __future__ import annotations

import argparse
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

import numpy as np
import yaml

from bench.chaos import Harness, runs_and_versions, snapshot
from tasks.data import sample
from tests.services import bin_path

CHECKS = ["no-running", "one-champion", "no-duplicate", "history-ok", "registry-clean", "oracle", "files-intact"]
GATES = {"min": {"rougeL": 0.05}, "primary": "rougeL", "min_delta": 0.0, "confidence": 0.95}
SOURCE = "data/sample/reports.csv"
FIRST_ROWS, NIGHTLY_ROWS, DRIFT_ROWS = 500, 40, 160


def one_kind(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` drifted rows: reports of one kind of event (one of the embedded sample's templates),
    two to a row, so inputs and targets are about twice as long as the month began with."""
    rng = random.Random(seed)
    sampler, forms, summary = rng.choice(sample.EVENTS)

    def one() -> tuple[str, str]:
        slots = sampler(rng)
        target = summary.format(**slots)
        return rng.choice(forms).format(**slots), target[0].upper() + target[1:]

    rows = []
    for _ in range(n):
        (a, x), (b, y) = one(), one()
        rows.append({"text": f"{a} {b}", "target": f"{x} {y}"})
    return rows


class Month:
    def __init__(self, work: Path, seed: int, nights: int):
        self.h = Harness(work, "tracking", seed, params=None, tiny=False)  # the shipped settings: a model that learns
        self.rng, self.nights, self.work = random.Random(seed), nights, work
        self._gates()
        # the team's setting for reports that grow twice as long over the month (at 128 tokens
        # validation refuses the drifted nights' data for truncation, as it should)
        self._params(lambda train: train.update(max_seq_length=192))
        self.rows = sample.generate(FIRST_ROWS, seed=seed)
        self.calendar = self._calendar()
        self.owed: list[str] = []  # approvals whose night never asked a person (the gates decided first)
        self.asked: list[str] = []

    # -- the month's plan ----------------------------------------------------------------------
    def _calendar(self) -> list[dict]:
        n, rng = self.nights, self.rng
        special = list(range(2, n + 1))
        rng.shuffle(special)
        bad, settings, approve, reject, rollback = (special + [0] * 5)[:5]
        days = []
        for night in range(1, n + 1):
            day = {"night": night, "data": "drift" if night == 1 or rng.random() < 0.33 else "quiet"}
            day["bad"] = night == bad
            day["settings"] = night == settings
            day["approval"] = "approve" if night == approve else "reject" if night == reject else None
            if day["approval"] or day["settings"]:
                day["data"] = "drift"  # a night that must train
            day["rollback"] = night == rollback
            day["fault"] = rng.choice(["kill", "term", "tracking"]) if night > 1 and rng.random() < 0.33 else None
            # a night that trains lasts about a minute; a quiet one is skipped in about ten seconds
            day["fault_at"] = rng.uniform(1.0, 45.0) if day["data"] == "drift" else rng.uniform(0.5, 8.0)
            days.append(day)
        return days

    def _gates(self, approval: str = "none", night: int = 0) -> None:
        """The month's gates; on an approval night the champion need not be beaten (a person
        decides), so that the night asks. Its timeout carries the night's number, so its gates
        differ from any champion's (one promoted on an earlier approval night included): a
        changed setting, so the night trains whatever its data."""
        path = self.h.root / "pipelines.yaml"
        pipes = yaml.safe_load(path.read_text())
        pipes["default"]["gates"] = {**GATES, "approval": approval, "approval_timeout_s": 600}
        if approval == "required":
            pipes["default"]["gates"].update(min_delta=None, confidence=None, approval_timeout_s=600 + night)
        path.write_text(yaml.safe_dump(pipes, sort_keys=False))

    def _params(self, change) -> None:
        path = self.h.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        change(params["train"])
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def _data(self, day: dict) -> str:
        """Write the night's ingest.source; returns what it holds."""
        night = day["night"]
        if day["data"] == "drift" and night > 1:
            self.rows += one_kind(DRIFT_ROWS, seed=1000 + night)
        elif night > 1:
            self.rows += sample.generate(NIGHTLY_ROWS, seed=2000 + night)
        rows = list(self.rows)
        if day["bad"]:
            for i in range(0, len(rows), 3):
                rows[i] = {"text": rows[i]["text"], "target": ""}
        seen, unique = set(), []
        for r in rows:
            if r["text"] not in seen:
                seen.add(r["text"])
                unique.append(r)
        sample.write_csv(unique, self.h.root / SOURCE)
        return f"{len(unique)} rows" + (", a third of the targets blank" if day["bad"] else "")

    # -- one night -----------------------------------------------------------------------------
    def start(self) -> tuple[subprocess.Popen, Path]:
        log = self.work / f"night-{time.monotonic_ns()}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench._night"],
            cwd=self.h.root,
            env={
                **self.h.env,
                "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p),
            },
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return proc, log

    def night(self, day: dict) -> tuple[str, str]:
        """Run the night (with its fault and re-run, its approval); returns (what happened, note)."""
        proc, log = self.start()
        note = ""
        if day["fault"]:
            note = self._fault(day, proc, log)
        if day["approval"]:
            note += self._answer(day["approval"], proc, log)
        try:
            proc.wait(timeout=1200)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            note += "night timed out; "
        text = log.read_text()
        if day["fault"] in ("kill", "term") and proc.returncode != 0:
            proc, log = self.start()  # the deployment's retry
            proc.wait(timeout=1200)
            text = log.read_text()
            note += f"re-run {proc.returncode}; "
        outcome = re.findall(r"^night: ([A-Z]+) ?(.*)$", text, re.M)
        said, message = outcome[-1] if outcome else (f"exit {proc.returncode}", "")
        said = said.lower()
        if "skipped" in message:
            said = "skipped"
        elif re.search(r"gate\s+: PROMOTED", text):
            said = "promoted"
        elif re.search(r"gate\s+: NOT PROMOTED", text):
            said = "rejected"
        elif "validate" in text and proc.returncode:
            said = "refused data" if "DataError" in text or "validation" in text.lower() else said
        return said, note

    def _fault(self, day: dict, proc: subprocess.Popen, log: Path) -> str:
        deadline = time.monotonic() + day["fault_at"]
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is not None:
            return f"{day['fault']} after the end; "
        running = re.findall(r"\] (\w+): running", log.read_text())
        where = running[-1] if running else "start-up"
        if day["fault"] == "kill":
            os.killpg(proc.pid, signal.SIGKILL)
        elif day["fault"] == "term":
            os.kill(proc.pid, signal.SIGTERM)
        else:
            self.h.server.stop()
            time.sleep(self.rng.uniform(2, 30))
            self.h.server.start()
        return f"{day['fault']} in {where} at {day['fault_at']:.0f}s; "

    def _answer(self, answer: str, proc: subprocess.Popen, log: Path) -> str:
        while proc.poll() is None and "waits for a person's approval" not in log.read_text():
            time.sleep(0.2)
        if proc.poll() is not None:
            return "no approval asked (a gate refused first, or nothing trained); "
        api = re.search(r"night: api (\S+)", log.read_text()).group(1)
        args = [bin_path("s2s"), "approve", "--reason", "soak"] + (["--reject"] if answer == "reject" else [])
        done = subprocess.run(
            args,
            cwd=self.h.root,
            env={**self.h.env, "PREFECT_API_URL": api},
            capture_output=True,
            text=True,
            timeout=300,
        )
        return f"{answer.removesuffix('e')}ed (s2s approve {done.returncode}); "

    # -- the promises --------------------------------------------------------------------------
    def champion(self) -> str | None:
        c = self.h.client()
        from mlflow.exceptions import MlflowException

        try:
            return str(c.get_registered_model("s2s-default").aliases.get("champion") or "") or None
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None  # nothing registered yet; any other failure is the soak's to report
            raise

    def check(self, day: dict, before: str | None) -> dict[str, bool]:
        c = self.h.client()
        ok: dict[str, bool] = {}
        ok["no-running"], ok["no-duplicate"], versions = runs_and_versions(c)
        now = self.champion()
        tags = c.get_model_version("s2s-default", now).tags if now else {}
        ok["one-champion"] = now is None or tags.get("promotion.decision") == "promoted" or day["rollback"]
        verify = subprocess.run(
            [bin_path("s2s"), "history", "--verify"], cwd=self.h.root, env=self.h.env, capture_output=True, text=True
        )
        ok["history-ok"] = verify.returncode == 0
        model = c.get_registered_model("s2s-default") if versions else None
        pending = (model.tags or {}) if model else {}
        ok["registry-clean"] = "s2s.pending" not in pending and "s2s.lease" not in pending and self.h.lock_free()
        ok["oracle"] = self.oracle(day, before, now)
        ok["files-intact"] = snapshot(self.h.root) == self.h.baseline
        return ok

    def oracle(self, day: dict, before: str | None, now: str | None) -> bool:
        if day["bad"] or day["approval"] == "reject":
            return now == before
        if now == before or day["rollback"] or before is None or day["approval"]:
            return True  # an approved version needs only the absolute bounds (checked: tagged promoted)
        rows = [json.loads(line) for line in (self.h.root / "reports" / "predictions.jsonl").read_text().splitlines()]
        paired = [(r["rougeL"], r["champion_rougeL"]) for r in rows if "champion_rougeL" in r]
        if not paired:
            return False  # a new champion with no comparison on the same rows
        diff = np.array([a - b for a, b in paired])
        rng = np.random.default_rng(0)
        means = diff[rng.integers(0, len(diff), size=(4000, len(diff)))].mean(axis=1)
        low = float(np.quantile(means, 0.025))
        return diff.mean() > 0 and low > -0.005  # rounding of the per-row scores (4 places)

    def run(self) -> int:
        header = f"{'night':>5}  {'data':6} {'also':22} {'fault':8} {'outcome':13} {'s':>5}  " + "  ".join(CHECKS)
        print(header)
        print("-" * len(header), flush=True)
        violations, faults, t0 = 0, 0, time.monotonic()
        for day in self.calendar:
            start = time.monotonic()
            before = self.champion()
            also = []
            if self.owed and not (day["approval"] or day["bad"] or day["rollback"] or day["fault"]):
                # the night's own data: its gates are a changed setting, so it trains, and data
                # like the old (not the long drifting reports) rarely fails a gate first
                day["approval"] = self.owed.pop(0)
            if day["settings"]:
                self._params(lambda train: train.update(lr=float(train.get("lr") or 0.001) * 1.5))
                also.append("lr x1.5")
            if day["approval"]:
                self._gates("required", day["night"])
                also.append(f"approval ({day['approval']})")
            held = self._data(day)
            if day["bad"]:
                also.append("bad file")
            self.h.baseline = snapshot(self.h.root)
            said, note = self.night(day)
            if day["approval"] and "no approval asked" in note:
                self.owed.append(day["approval"])
            elif day["approval"]:
                self.asked.append(day["approval"])
            if day["approval"]:
                self._gates("none")
                self.h.baseline = snapshot(self.h.root)
            if day["rollback"] and self.champion():
                back = subprocess.run(
                    [bin_path("s2s"), "rollback"], cwd=self.h.root, env=self.h.env, capture_output=True, text=True
                )
                also.append(f"rollback {back.returncode}")
            faults += bool(day["fault"])
            ok = self.check(day, before)
            bad = [k for k, v in ok.items() if not v]
            violations += len(bad)
            marks = "  ".join(("ok" if ok[k] else "FAIL").center(len(k)) for k in CHECKS)
            print(
                f"{day['night']:>5}  {day['data']:6} {', '.join(also)[:22]:22} {day['fault'] or '-':8} {said[:13]:13} "
                f"{time.monotonic() - start:5.0f}  {marks}  {held}; {note}",
                flush=True,
            )
        minutes = (time.monotonic() - t0) / 60
        print(f"nights: {len(self.calendar)}, faults: {faults}, violations: {violations}, wall time: {minutes:.1f} min")
        print(f"a person was asked {len(self.asked)} time(s) ({', '.join(self.asked) or 'never'})", end="")
        print(f"; never asked: {', '.join(self.owed)}" if self.owed else "")
        return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="s2s-soak-"))
    month = Month(work, args.seed, args.nights)
    print(f"soak: {args.nights} nights, seed {args.seed}, in {work}; the shipped settings, certified gates {GATES}")
    try:
        return month.run()
    finally:
        month.h.server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
