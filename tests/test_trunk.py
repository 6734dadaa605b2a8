"""Pretrained trunks: trained and saved by ``optileuk train`` of a dknn, read safely by dknn,
feature_selection and pipeline; frozen trunks stay as they were, fine-tuned ones change."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from conftest import run_cli, write
from optileuk.errors import ConfigError, DataError
from optileuk.objectives import make
from optileuk.objectives._trunk import TRUNK_FILE, read_trunk

DATA = {"type": "synthetic", "n_per_class": 10, "size": 32, "smears": 8}
WIDTHS = [8, 16]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A dknn trained with ``optileuk train`` (ReLU, so the trunk is not the default PReLU one)."""
    folder = tmp_path_factory.mktemp("trunk")
    write(folder / "cfg.yaml", f"""
        objective: {{type: dknn, dataset: {DATA}, image_size: 32, widths: {WIDTHS}, hidden: 8,
                     split: {{test_size: 0.2, folds: 1, val_size: 0.25}}}}
        params: {{epochs: 2, activation: relu, rank1: 1, rank2: 0}}
        """.replace("'", ""))
    r = run_cli("train", "cfg.yaml", "-o", "run", "-q", cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "run"


def trunk_tensors(net):
    return {k: v.detach().cpu().clone() for k, v in net.trunk.state_dict().items()}  # on a GPU too


def test_train_writes_a_trunk_file_that_says_its_architecture_and_input_size(run_dir):
    trunk = read_trunk(run_dir)  # the run folder, or the file in it
    assert trunk.path == run_dir / TRUNK_FILE
    assert trunk.architecture == {"widths": WIDTHS, "activation": "relu", "prelu_mode": "channel", "kron_conv_rank": 0,
                                  "depth": 0}
    assert trunk.image_size == 32 and trunk.classes == ["normal", "L1", "L2", "L3"]


@pytest.mark.parametrize("freeze, changes", [(True, False), (False, True), (1, True)])
def test_freeze_really_freezes_and_fine_tuning_changes_the_trunk(run_dir, freeze, changes):
    obj = make("dknn", {"dataset": DATA, "image_size": 32, "hidden": 8, "split": {"test_size": 0.2, "folds": 1, "val_size": 0.25},
                        "trunk": {"weights": str(run_dir), "freeze": freeze}}, seed=1)
    before = {k: v for k, v in read_trunk(run_dir).tensors.items()}
    fitted = obj.fit_final({"epochs": 2, "rank1": 1, "rank2": 1})
    after = trunk_tensors(fitted.model.net)
    same = all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics
    assert same != changes
    score = obj.evaluate({"epochs": 2, "rank1": 1, "rank2": 1})
    assert 0.0 <= score.value <= 1.0 and score.attrs["params"] > 0


def test_the_trunk_is_searchable_and_its_fixed_keys_are_refused(run_dir):
    from optileuk.space import SearchSpace

    cfg = {"dataset": DATA, "image_size": 32, "trunk": {"weights": str(run_dir)}}
    ok = SearchSpace.from_dict({"parameters": {"freeze": {"type": "categorical", "choices": [True, False]},
                                               "trunk_lr_scale": {"type": "float", "low": 0.01, "high": 1.0}}})
    assert make("dknn", cfg).space_problems(ok) == []
    bad = SearchSpace.from_dict({"parameters": {"activation": {"type": "categorical", "choices": ["prelu", "relu"]}}})
    assert "is fixed by objective.trunk" in make("dknn", cfg).space_problems(bad)[0]
    no_trunk = make("dknn", {"dataset": DATA}).space_problems(ok)
    assert any("needs objective.trunk" in m for m in no_trunk)


def test_feature_selection_and_pipeline_take_their_deep_features_from_the_trunk(run_dir):
    trunk = read_trunk(run_dir)
    fs = make("feature_selection", {"dataset": DATA, "weights": str(run_dir), "widths": WIDTHS, "image_size": 32,
                                    "split": {"test_size": 0.2, "folds": 2}}, seed=0)
    net = fs._load_trunk(4)
    assert all(torch.equal(v, trunk.tensors[k]) for k, v in trunk_tensors(net).items())
    fitted = fs.fit_final({"features": list(range(4))})
    assert all(torch.equal(v, trunk.tensors[k]) for k, v in trunk_tensors(fitted.model.net).items())
    pipe = make("pipeline", {"dataset": DATA, "image_size": 32, "weights": str(run_dir / TRUNK_FILE), "widths": WIDTHS,
                             "trunk_size": 32, "split": {"test_size": 0.2, "folds": 2}}, seed=0)
    pipe.prepare()
    deep = pipe._trunk()
    assert all(torch.equal(v, trunk.tensors[k]) for k, v in trunk_tensors(deep).items())
    assert any(name.startswith("deep_") for name in pipe.feature_names)


def test_a_trunk_that_does_not_fit_is_one_clear_message_exit_2(run_dir, workdir):
    write(workdir / "study.yaml", f"""
        name: wrong-size
        objective: {{type: dknn, dataset: {{type: synthetic, n_per_class: 10, size: 32}}, image_size: 64,
                     trunk: {{weights: {run_dir}}}}}
        search_space: {{parameters: {{rank1: {{type: int, low: 1, high: 2}}}}}}
        optimizer: {{name: random, population: 2}}
        budget: {{trials: 2}}
        """)
    r = run_cli("run", "study.yaml", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "objective.image_size must be the trunk's input size 32" in r.stderr, r.stderr
    assert not (workdir / "optileuk.db").exists()  # nothing written
    (workdir / "study.yaml").write_text((workdir / "study.yaml").read_text().replace(
        "image_size: 64,", "image_size: 32,").replace(f"weights: {run_dir}}}", f"weights: {run_dir}, freeze: -2}}"))
    r = run_cli("run", "study.yaml", cwd=workdir)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: study.yaml: objective.trunk.freeze must be true, false or the number of epochs frozen (0 or more), "
        "got -2"), r.stderr
    assert not (workdir / "optileuk.db").exists()
    with pytest.raises(ConfigError, match="objective.widths must be the trunk's widths"):
        make("feature_selection", {"dataset": DATA, "weights": str(run_dir), "widths": [8, 16, 32], "image_size": 32}
             )._load_trunk(4)


def test_a_trunk_trained_again_under_the_same_name_is_a_different_study(run_dir, workdir):
    """The study's fingerprint holds the trunk file's content: a rerun after the trunk was replaced is
    refused (exit 2, nothing written) instead of mixing candidates scored on two trunks; a study
    stored before fingerprints held file contents is resumed and its fingerprint brought up to date."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from optileuk.config import load_study
    from optileuk.runner import Runner
    from optileuk.runner._trials import fingerprint
    from optileuk.storage import FINGERPRINT_KEY, open_storage

    shutil.copy(run_dir / TRUNK_FILE, workdir / TRUNK_FILE)
    write(workdir / "study.yaml", f"""
        name: trunk-content
        objective: {{type: dknn, dataset: {DATA}, image_size: 32, hidden: 8, trunk: {{weights: {TRUNK_FILE}}},
                     split: {{test_size: 0.2, folds: 1, val_size: 0.25}}, defaults: {{epochs: 1}}}}
        search_space: {{parameters: {{lr: {{type: float, low: 0.001, high: 0.01, log: true}}}}}}
        optimizer: {{name: random, population: 2}}
        budget: {{trials: 2}}
        """.replace("'", ""))
    Runner(load_study(workdir / "study.yaml")).run()
    url = f"sqlite:///{workdir / 'optileuk.db'}"
    storage = open_storage(url)
    sid = storage.get_study_id_from_name("trunk-content")

    runner = Runner(load_study(workdir / "study.yaml")).prepare()
    _, space, _, _ = runner._prepared
    new, old = fingerprint(runner.study, space, runner._inputs), fingerprint(runner.study, space)
    assert set(runner._inputs) == {"files", "data"} and runner._inputs["files"]["trunk.weights"]
    assert new != old and storage.get_study_system_attrs(sid)[FINGERPRINT_KEY] == new
    storage.set_study_system_attr(sid, FINGERPRINT_KEY, old)  # as an earlier optileuk stored it
    assert Runner(load_study(workdir / "study.yaml", trials=3)).run().trials == 3
    assert storage.get_study_system_attrs(sid)[FINGERPRINT_KEY] == new

    with safe_open(str(workdir / TRUNK_FILE), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    first = sorted(k for k in tensors if k.endswith("weight"))[0]
    tensors[first] = tensors[first] + 0.01  # the trunk trained again: same name, same architecture
    save_file(tensors, str(workdir / TRUNK_FILE), metadata=meta)
    r = run_cli("run", "study.yaml", "--trials", "4", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "its trunk or stain reference file's content" in r.stderr and "trunk-content" in r.stderr, r.stderr
    assert len(storage.get_all_trials(sid)) == 3  # nothing written
    assert storage.get_study_system_attrs(sid)[FINGERPRINT_KEY] == new


def test_weights_are_read_without_unpickling(tmp_path):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    bad = tmp_path / "trunk.pt"
    with open(bad, "wb") as f:
        pickle.dump({"trunk.0.weight": Payload()}, f)
    with pytest.raises(DataError, match="not a trunk file or a DKNN state_dict read as plain tensors"):
        read_trunk(bad)
    assert not (tmp_path / "pwned").exists()  # the payload never ran
    (tmp_path / "fake.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(DataError):
        read_trunk(tmp_path / "fake.safetensors")
    # a plain state_dict of a DKNN (torch.save of tensors only) is read, its architecture from its shapes
    from optileuk.models import DKNN

    net = DKNN(4, image_size=32, widths=(8, 16), prelu_mode="shared")
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    t = read_trunk(tmp_path / "plain.pt")
    assert t.architecture["widths"] == [8, 16] and t.architecture["prelu_mode"] == "shared" and t.image_size is None
    assert np.isclose(float(t.tensors["0.weight"].sum()), float(net.trunk[0].weight.detach().sum()))


def test_a_residual_trunk_round_trips_and_says_its_depth(tmp_path):
    """``depth``: residual blocks per stage; the trunk file says it, a dknn on it builds the same
    blocks, and a bare state_dict's depth is read from its tensors."""
    from optileuk.models import DKNN

    cfg = {"dataset": DATA, "image_size": 32, "widths": WIDTHS, "hidden": 8,
           "split": {"test_size": 0.2, "folds": 1, "val_size": 0.25}}
    fitted = make("dknn", cfg, seed=0).fit_final({"epochs": 1, "depth": 2, "pool": "avg", "rank1": 1, "rank2": 0})
    (tmp_path / "run").mkdir()
    fitted.model.save_extras(tmp_path / "run")
    trunk = read_trunk(tmp_path / "run")
    assert trunk.architecture["depth"] == 2 and sum(k.endswith("conv2.weight") for k in trunk.tensors) == 4
    obj = make("dknn", {**cfg, "trunk": {"weights": str(tmp_path / "run"), "freeze": True}}, seed=0)
    net = obj.build(obj.params({"pool": "flatten"}), 4)
    assert all(torch.equal(v, trunk.tensors[k]) for k, v in trunk_tensors(net).items())
    assert obj.evaluate({"epochs": 1}).attrs["params"] > 0
    torch.save(DKNN(4, image_size=32, widths=(8, 16), depth=3).state_dict(), tmp_path / "plain.pt")
    assert read_trunk(tmp_path / "plain.pt").architecture["depth"] == 3


def test_test_time_augmentation_is_scored_and_applied_by_the_trained_model(tmp_path):
    """``tta``: the validation score averages the 8 dihedral views; the trained model predicts the same
    way (its bundle says so), and a rotated image gets the same probabilities as the original."""
    from optileuk.objectives._torch import image_tensor, predict_proba

    cfg = {"dataset": DATA, "image_size": 32, "widths": WIDTHS, "hidden": 8,
           "split": {"test_size": 0.2, "folds": 1, "val_size": 0.25}}
    obj = make("dknn", cfg, seed=0)
    plain, tta = obj.evaluate({"epochs": 2}), obj.evaluate({"epochs": 2, "tta": True})
    assert plain.attrs["train_seconds"] > 0 and tta.attrs["train_seconds"] > 0
    fitted = obj.fit_final({"epochs": 2, "tta": True})
    model = fitted.model
    assert model.spec["tta"] is True and model.describe()["test_time_augmentation"] is True
    images = [np.asarray(im) for im in obj.prepared.ds.images[:6]]
    rotated = [np.rot90(im).copy() for im in images]
    assert np.allclose(model.predict_proba(images), model.predict_proba(rotated), atol=1e-5)
    x, dev = image_tensor(images, 32), next(fitted.model.net.parameters()).device  # cuda where there is one
    assert np.allclose(model.predict_proba(images), predict_proba(fitted.model.net, x, dev, tta=True).numpy(), atol=1e-6)
    assert not np.allclose(predict_proba(fitted.model.net, x, dev).numpy(),
                           predict_proba(fitted.model.net, torch.rot90(x, 1, (2, 3)), dev).numpy(), atol=1e-4)
