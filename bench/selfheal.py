"""Self-healing, end to end (the long variant of tests/test_triggers.py).

A real `prefect server start` and a real `s2s worker` on 127.0.0.1; `s2s deploy default` creates
the retrain deployment with its data-arrival trigger and the two healing automations. A data
arrival starts a retrain; once training has written a checkpoint, the worker's process group is
SIGKILLed (the machine or container dying: the flow run's process goes with it). A new worker is
started at once. The flow run's heartbeats stop, the server's automation marks it Crashed after
3 missed heartbeats, the second automation runs the deployment again, and the new run resumes
training from the last complete checkpoint and registers a version.

    python -m bench.selfheal                 # about 3-4 minutes (90 s of it is the heartbeat window)

Prints the timeline: kill -> Crashed -> re-run started -> completed, and the checkpoint resumed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from projects import make_clone  # noqa: E402
from services import children, free_port, stop_group, wait_healthy  # noqa: E402


def bin_(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="training steps of the retrain (checkpoint every 40)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)

    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with tempfile.TemporaryDirectory(prefix="s2s-selfheal-") as tmp:
        tmp = Path(tmp)
        home = tmp / "prefect-home"
        home.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        base_env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        base_env.pop("PREFECT_API_URL", None)
        server_log = open(tmp / "server.log", "w")
        server = subprocess.Popen(
            [bin_("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**base_env, "PREFECT_UI_ENABLED": "false"},
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        workers: list[subprocess.Popen] = []
        try:
            wait_healthy(f"{url}/health", server, tmp / "server.log")
            project = make_clone(
                tmp / "proj",
                params={
                    "train": {
                        "max_steps": args.steps,
                        "eval_strategy": "steps",
                        "eval_steps": 40,
                        "save_total_limit": 2,
                    }
                },
            )
            env = {**base_env, "PREFECT_API_URL": url, "S2S_ROOT": str(project)}
            deployed = subprocess.run(
                [bin_("s2s"), "deploy", "default"], cwd=project, env=env, capture_output=True, text=True
            )
            assert deployed.returncode == 0, deployed.stderr

            def start_worker(n: int) -> subprocess.Popen:
                log = open(tmp / f"worker{n}.log", "w")
                w = subprocess.Popen(
                    [bin_("s2s"), "worker", "--pool", "s2s"],
                    cwd=home,
                    env={k: v for k, v in env.items() if k != "S2S_ROOT"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                workers.append(w)
                return w

            start_worker(1)
            time.sleep(3)
            from tasks.data.sources import dvc_hash

            version = dvc_hash(project / "data" / "sample" / "reports.csv")
            subprocess.run(
                [bin_("s2s"), "data", "add", "--version", version, "--pipeline", "default"],
                cwd=project,
                env=env,
                check=True,
            )
            t0 = time.monotonic()
            checkpoints = project / "artifacts" / "checkpoints"
            while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
                assert time.monotonic() - t0 < args.timeout, "no checkpoint was written"
                time.sleep(0.5)
            first = sorted(checkpoints.glob("checkpoint-*"))[-1].name
            doomed, todo = [], [workers[0].pid]
            while todo:  # the worker and everything under it (the flow run may sit in a session of its own)
                pid = todo.pop()
                doomed.append(pid)
                todo.extend(children(pid))
            for pid in doomed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            workers[0].wait()
            killed = time.monotonic()
            print(f"{killed - t0:6.1f} s  worker and its flow run process SIGKILLed during training, after {first}")
            start_worker(2)

            with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name("retrain/default")
                seen: dict[str, str] = {}
                crashed_at = rerun_at = None
                while True:
                    runs = client.read_flow_runs(
                        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                    )
                    for r in runs:
                        if r.state.name == "Scheduled" and len(runs) > 2:
                            continue
                        if seen.get(str(r.id)) != r.state.name:
                            seen[str(r.id)] = r.state.name
                            now = time.monotonic()
                            print(f"{now - t0:6.1f} s  {r.name}: {r.state.name} {r.state.message or ''}".rstrip())
                            if r.state.name == "Crashed" and crashed_at is None:
                                crashed_at = now
                            if r.state.name == "Running" and crashed_at is not None and rerun_at is None:
                                rerun_at = now
                    done = [r for r in runs if r.state.is_completed()]
                    if done and crashed_at:
                        break
                    assert time.monotonic() - t0 < args.timeout, seen
                    time.sleep(1)
            finished = time.monotonic()
            from tasks.core.config import load_config
            from tasks.tracking import client as tracking

            cfg = load_config(root=project)
            c = tracking.client(cfg)
            versions = c.search_model_versions("name='s2s-default'")
            resumed = [c.get_run(v.run_id).data.tags.get("resumed_from") for v in versions]
            resumed = [r for r in resumed if r]
            print()
            print(f"kill -> Crashed (heartbeat window {3 * 30} s): {crashed_at - killed:.1f} s")
            print(f"Crashed -> re-run running: {rerun_at - crashed_at:.1f} s" if rerun_at else "re-run: not seen")
            print(f"kill -> completed: {finished - killed:.1f} s")
            print(f"the re-run's MLflow run resumed from: {resumed[-1] if resumed else 'NOT FOUND'}")
            print(f"registered versions: {len(versions)}")
            return 0 if resumed and len(versions) == 1 else 1
        finally:
            for w in workers:
                stop_group(w)
            stop_group(server)
            server_log.close()


if __name__ == "__main__":
    raise SystemExit(main())
