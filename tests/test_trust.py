"""Trust: a storage password never reaches an output, a file, a study attr or a command line."""

from __future__ import annotations

import json
import os
import subprocess
import time

import optuna

from conftest import optileuk_exe, run_cli, write

SECRET = "S3cretPw9"


def _ps() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_a_storage_password_appears_nowhere(workdir, postgres_url):
    # the CI server trusts local connections, so any password is accepted: the URL carries one
    user, rest = postgres_url.split("://", 1)[1].split("@", 1)
    url = f"postgresql+psycopg://{user}:{SECRET}@{rest}"
    write(workdir / "s.yaml", f"""
        name: secret
        storage: {url}
        objective: {{type: analytic, function: sphere, sleep: 0.05}}
        search_space: {{parameters: {{x: {{type: float, low: -2, high: 2}}, y: {{type: float, low: -2, high: 2}}}}}}
        optimizer: {{name: pso, population: 6}}
        budget: {{trials: 30}}
        runner: {{workers: 2}}
        """)
    write(workdir / "c.yaml", f"""
        name: sec
        storage: {url}
        seeds: 2
        objective: {{type: analytic, function: sphere}}
        search_space: {{parameters: {{x: {{type: float, low: -2, high: 2}}}}}}
        optimizers: [{{name: pso, population: 4}}, {{name: random, population: 4}}]
        budget: {{trials: 8}}
        """)
    outputs = []
    proc = subprocess.Popen([optileuk_exe(), "run", "s.yaml"], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "250"})  # no wrapped URL
    seen = ""
    while proc.poll() is None:  # the driver's and its Dask workers' command lines, while they run
        seen += _ps()
        time.sleep(0.2)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "postgresql+psycopg://" in out and ":***@" in out  # the summary names the storage, redacted
    outputs += [seen, out, err]
    for args in (["list", "--storage", url], ["export", "secret", "--storage", url, "-o", "best.yaml"],
                 ["compare", "c.yaml"], ["report", "--storage", url, "--prefix", "sec", "-o", "report.html"]):
        r = run_cli(*args, cwd=workdir)
        assert r.returncode == 0, (args, r.stderr)
        outputs += [r.stdout, r.stderr]
    outputs += [(workdir / "best.yaml").read_text(), (workdir / "report.html").read_text()]
    storage = optuna.storages.RDBStorage(url)
    for s in storage.get_all_studies():  # what optuna-dashboard serves: study and trial attrs
        outputs.append(json.dumps([s.user_attrs, s.system_attrs], default=str))
        outputs += [json.dumps([t.user_attrs, t.system_attrs], default=str)
                    for t in storage.get_all_trials(s._study_id)]
    leaks = [i for i, text in enumerate(outputs) if SECRET in text]
    assert not leaks, [outputs[i][:300] for i in leaks]
