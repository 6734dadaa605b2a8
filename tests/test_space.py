"""Search spaces: encoding, decoding (always valid), Optuna distributions, compact masks, suggest."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from optileuk.errors import ConfigError
from optileuk.space import SearchSpace, pack_bits, unpack_bits

MIXED = {
    "parameters": {
        "x": {"type": "float", "low": -2.0, "high": 3.0},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "k": {"type": "int", "low": 2, "high": 6},
        "width": {"type": "int", "low": 8, "high": 64, "step": 8},
        "units": {"type": "int", "low": 1, "high": 1024, "log": True},
        "colour": {"type": "categorical", "choices": ["rgb", "hsv", "lab"]},
        "fill": {"type": "bool"},
        "features": {"type": "mask", "length": 40},
    }
}


@pytest.fixture
def space():
    return SearchSpace.from_dict(MIXED)


def _valid(space: SearchSpace, cfg: dict) -> None:
    p = space.params
    assert -2.0 <= cfg["x"] <= 3.0
    assert 1e-4 <= cfg["lr"] <= 1e-1
    assert isinstance(cfg["k"], int) and 2 <= cfg["k"] <= 6
    assert cfg["width"] in range(8, 65, 8)
    assert isinstance(cfg["units"], int) and 1 <= cfg["units"] <= 1024
    assert cfg["colour"] in p["colour"].choices
    assert isinstance(cfg["fill"], bool)
    assert cfg["features"].dtype == bool and cfg["features"].shape == (40,)
    return True


def test_box_layout(space):
    box = space.box
    assert box.dim == 7 + 40
    assert box.kinds[:7] == ("real", "real", "int", "int", "int", "choice", "binary")
    assert box.binary.sum() == 41
    assert box.choices[5] == 3


def test_any_point_decodes_to_a_valid_config(space):
    rng = np.random.default_rng(0)
    box = space.box
    span = box.upper - box.lower
    for _ in range(500):
        # points inside, on and far outside the box (decode clips, rounds and snaps)
        x = box.lower + span * rng.uniform(-0.5, 1.5, box.dim)
        assert _valid(space, space.decode(box.clip(x)))
    assert _valid(space, space.decode(box.lower))
    assert _valid(space, space.decode(box.upper))


def test_every_int_value_is_reachable_with_equal_width(space):
    box = space.box
    sl = space.slices["k"]
    xs = np.linspace(box.lower[sl][0], box.upper[sl][0], 10001)
    counts = np.bincount([space.params["k"].decode([v]) for v in xs])[2:]
    assert len(counts) == 5 and counts.min() > 0.9 * counts.max()


def test_encode_decode_round_trip(space):
    rng = np.random.default_rng(1)
    for _ in range(100):
        cfg = space.decode(space.box.uniform(rng, 1)[0])
        back = space.decode(space.encode(cfg))
        for k, v in cfg.items():
            if isinstance(v, np.ndarray):
                assert np.array_equal(v, back[k])
            elif isinstance(v, float):
                assert back[k] == pytest.approx(v, rel=1e-12)
            else:
                assert back[k] == v


def test_distributions_are_optuna_distributions(space):
    d = space.distributions()
    assert d["x"] == FloatDistribution(-2.0, 3.0)
    assert d["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["width"] == IntDistribution(8, 64, step=8)
    assert d["colour"] == CategoricalDistribution(["rgb", "hsv", "lab"])
    assert d["fill"] == CategoricalDistribution([False, True])
    # a 40-bit mask is ONE parameter (its count) plus a packed user attr, never 40 parameters
    assert d["features.n_selected"] == IntDistribution(0, 40)
    assert not any(name.startswith("features.") and name != "features.n_selected" for name in d)


def test_record_is_compact_and_reversible(space):
    cfg = space.decode(space.box.uniform(np.random.default_rng(2), 1)[0])
    params, dists, attrs = space.record(cfg)
    assert set(params) == set(dists)
    assert params["features.n_selected"] == int(cfg["features"].sum())
    assert isinstance(attrs["features"], str) and len(attrs["features"]) == 10  # 40 bits -> 10 hex chars
    # the record is accepted by Optuna as a trial
    trial = optuna.trial.create_trial(params=params, distributions=dists, value=0.0, user_attrs=attrs)
    back = space.from_record(trial.params, trial.user_attrs)
    assert np.array_equal(back["features"], cfg["features"])
    assert back["colour"] == cfg["colour"]


def test_pack_bits_round_trip():
    rng = np.random.default_rng(3)
    for n in (1, 7, 8, 9, 512, 1000):
        bits = rng.integers(0, 2, n).astype(bool)
        assert np.array_equal(unpack_bits(pack_bits(bits), n), bits)


def test_suggest_in_plain_optuna(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []

    def objective(trial):
        cfg = space.suggest(trial)
        configs.append(cfg)
        return float(cfg["x"] ** 2)

    study.optimize(objective, n_trials=20)
    assert len(configs) == 20
    for cfg in configs:
        _valid(space, cfg)
    # the mask is suggested compactly: a count and a seed
    assert len(study.trials[0].params) == 9
    t = study.trials[0]
    assert np.array_equal(space.from_record(t.params, t.user_attrs)["features"], configs[0]["features"])
    assert configs[0]["features"].sum() == t.params["features.n_selected"]


def test_suggest_with_fixed_trial(space):
    fixed = {"x": 1.5, "lr": 0.01, "k": 3, "width": 16, "units": 100, "colour": "lab", "fill": True,
             "features.n_selected": 5, "features.seed": 42}
    cfg = space.suggest(optuna.trial.FixedTrial(fixed))
    assert cfg["x"] == 1.5 and cfg["colour"] == "lab" and cfg["features"].sum() == 5


def test_auto_mask_is_bound_from_the_objective():
    space = SearchSpace.from_dict({"parameters": {"f": {"type": "mask", "length": "auto"}}})
    with pytest.raises(ValueError):
        _ = space.box
    bound = space.bind({"f": 12})
    assert bound.box.dim == 12
    with pytest.raises(ConfigError, match="objective supplies no length"):
        space.bind({})


@pytest.mark.parametrize("spec, needle", [
    ({"type": "float", "low": 3, "high": 1}, "low must be < high"),
    ({"type": "float", "low": 0, "high": 1, "log": True}, "low must be > 0"),
    ({"type": "int", "low": 5, "high": 2}, "low must be <= high"),
    ({"type": "int", "low": 0, "high": 10, "step": 3}, "multiple of step"),
    ({"type": "int", "low": 1, "high": 10, "step": 0}, "step must be >= 1"),
    ({"type": "categorical", "choices": []}, "choices must have at least 1"),
    ({"type": "categorical", "choices": ["a", "a"]}, "distinct"),
    ({"type": "mask", "length": 0}, "length must be >= 1"),
    ({"type": "vector"}, "type must be one of"),
    ({"type": "float", "low": 0, "high": 1, "lo": 2}, "lo is not a known key"),
])
def test_bad_parameters_are_reported_with_their_path(spec, needle):
    with pytest.raises(ConfigError) as exc:
        SearchSpace.from_dict({"parameters": {"p": spec}}, source="s.yaml")
    msg = str(exc.value)
    assert msg.startswith("s.yaml: parameters.p")
    assert needle in msg


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        SearchSpace.from_dict({"parameters": {"a": {"type": "float", "low": 2, "high": 1},
                                              "b": {"type": "int", "low": "x", "high": 3}}}, source="s.yaml")
    assert len(exc.value.problems) == 2


# ---- conditional parameters ---------------------------------------------------------------------------
COND = {"parameters": {
    "method": {"type": "categorical", "choices": ["kmeans", "pgs", "otsu"]},
    "k": {"type": "int", "low": 2, "high": 6, "when": {"method": ["kmeans", "pgs"]}},
    "T": {"type": "float", "low": 0.01, "high": 0.1, "log": True, "when": {"method": "pgs"}},
    "offset": {"type": "float", "low": -0.2, "high": 0.2, "when": {"method": "otsu"}},
    "refine": {"type": "bool", "when": {"method": "pgs"}},
    "rounds": {"type": "int", "low": 1, "high": 3, "when": {"refine": True}},  # nested: pgs and refine
    "blur": {"type": "float", "low": 0.0, "high": 2.0}}}


def _active(config):
    m = config["method"]
    want = {"method", "blur"} | ({"k"} if m != "otsu" else set()) | ({"T", "refine"} if m == "pgs" else set())
    want |= {"offset"} if m == "otsu" else set()
    return want | ({"rounds"} if m == "pgs" and config.get("refine") else set())


def test_conditional_parameters_decode_record_and_suggest_only_what_is_active():
    space = SearchSpace.from_dict(COND)
    rng = np.random.default_rng(0)
    box = space.box
    for _ in range(200):
        x = rng.uniform(box.lower, box.upper)
        config = space.decode(x)
        assert set(config) == _active(config)
        params, dists, attrs = space.record(config)
        assert set(params) == set(config) == set(dists)  # inactive: not a trial parameter
        assert attrs["inactive"] == [n for n in space.params if n not in config]
        assert space.from_record(params, attrs) == config
        assert space.decode(space.encode(config)) == config  # inactive coordinates are free
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: float(len(space.suggest(t))), n_trials=60)
    assert {t.params["method"] for t in study.trials} == {"kmeans", "pgs", "otsu"}
    assert all(set(t.params) == _active(t.params) for t in study.trials)  # define-by-run
    assert any("rounds" in t.params for t in study.trials)
    plain = SearchSpace.from_dict({"parameters": {"x": {"type": "float", "low": 0, "high": 1}}})
    assert "when" not in plain.to_dict()["parameters"]["x"]  # unconditional spaces keep their fingerprint


@pytest.mark.parametrize("when, rule", [
    ({"method": "pgs"}, "parameters.a.when.method must name a parameter defined before this one"),
    ({"nope": 1}, "parameters.a.when.nope is not a parameter of this space"),
    ({"x": 0.5}, "parameters.a.when.x must name a categorical, bool or int parameter, not a float"),
    ({"k": 9}, "parameters.a.when.k must list values 'k' can take (2, 3, 4), got 9"),
])
def test_conditions_are_checked_with_their_key_path(when, rule):
    spec = {"parameters": {"x": {"type": "float", "low": 0, "high": 1}, "k": {"type": "int", "low": 2, "high": 4},
                           "a": {"type": "float", "low": 0, "high": 1, "when": when},
                           "method": {"type": "categorical", "choices": ["pgs"]}}}
    with pytest.raises(ConfigError) as exc:
        SearchSpace.from_dict(spec, source="s.yaml")
    assert rule in str(exc.value), str(exc.value)
