"""The study file: shipped studies load, the schema round-trips, bad input is named clearly."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import optuna
import pytest
import yaml

from ado_ray.study import (
    STUDIES_DIR,
    ParamSpec,
    Study,
    StudyError,
    dump_study,
    load_study,
    shipped_studies,
)

SHIPPED = [
    "quickstart",
    "wikitext2_seed",
    "wikitext2_articles",
    "pile_domains",
    "arms_showdown",
    "pile_showdown",
    "swarm_headroom",
]


def minimal() -> dict:
    return {
        "name": "t",
        "arms": {
            "uniform": {},
            "natural": {},
            "ado": {
                "options": {"warmup_steps": 30},
                "search": {
                    "gamma1": {"type": "loguniform", "low": 0.01, "high": 1.0},
                    "gamma2": {"type": "uniform", "low": 0.01, "high": 1.0},
                    "s": {"type": "uniform", "low": 0.0, "high": 1.0},
                    "delta_min": {"type": "loguniform", "low": 0.001, "high": 0.05},
                    "update_interval": {"type": "int", "low": 10, "high": 100},
                    "count_mode": {"type": "categorical", "choices": ["same_step_size", "own"]},
                },
            },
        },
        "training": {"budget": {"steps": 300}},
        "seeds": [0, 1],
    }


def with_(path: str, value, base: dict | None = None) -> dict:
    """A copy of ``base`` (default: minimal()) with the dotted ``path`` set to ``value``."""
    d = copy.deepcopy(base or minimal())
    node = d
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return d


def error_of(study) -> str:
    with pytest.raises(StudyError) as info:
        load_study(study)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# -- shipped studies -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_loads_and_round_trips(name):
    path = STUDIES_DIR / f"{name}.yaml"
    study = load_study(path)
    assert study.name == name
    assert load_study(name) == study  # a bare name finds the shipped file
    assert load_study(study.to_dict()) == study
    assert load_study(yaml.safe_load(dump_study(study))) == study
    assert "ado" in study.arms and "uniform" in study.arms


def test_shipped_studies_listed():
    assert set(SHIPPED) <= set(shipped_studies())


def test_quickstart_is_small_and_offline():
    s = load_study("quickstart")
    assert s.data.source == "synthetic" and s.model.preset == "tiny"
    assert s.model.pretrained is None and s.resources.gpus_per_worker == 0
    assert s.training.budget.kind == "steps" and s.training.budget.value <= 300
    assert s.has_search and s.search.num_samples <= 3
    assert set(s.search_space("ado")) == {"gamma1", "gamma2", "s", "delta_min"}
    assert s.storage == "./ado_results"


def test_wikitext_studies_differ_only_in_grouping():
    seg = load_study("wikitext2_seed").to_dict()
    art = load_study("wikitext2_articles").to_dict()
    assert seg["data"]["options"]["grouping"] == "segments"
    assert art["data"]["options"]["grouping"] == "articles"
    for d in (seg, art):
        d.pop("name"), d.pop("description"), d["data"]["options"].pop("grouping")
    assert seg == art
    s = load_study("wikitext2_seed")
    assert s.model.pretrained == "gpt2" and s.model.preset == "small"
    assert s.data.options["fraction"] == 0.2 and s.data.options["seq_len"] == 100
    assert s.training.budget.to_dict() == {"epochs": 3}
    assert s.seeds == [0, 1, 2]


def test_pile_study_scales_ado_settings_with_the_run():
    s = load_study("pile_domains")
    steps = s.budget_steps(seq_len=s.data.options["seq_len"], total_train_sequences=1)
    assert steps == 5000
    ado = s.arms["ado"].options
    assert ado["warmup_steps"] == ado["update_interval"] == round(0.02 * steps)


# -- round trip and defaults -----------------------------------------------------------------


def test_defaults_and_round_trip():
    s = load_study({"name": "x", "arms": {"uniform": None}})
    assert s.training.batch_size == 16 and s.training.lr == 1e-3
    assert s.training.budget.to_dict() == {"steps": 300}
    assert s.seeds == [0, 1, 2] and s.search_seeds == [3]  # fresh: not a confirm seed
    assert s.metric == "val_loss_balanced" and s.mode == "min"
    assert s.storage == "./ado_results"
    assert not s.has_search
    d = s.to_dict()
    assert load_study(d) == s
    assert load_study(d).to_dict() == d


def test_round_trip_full(tmp_path: Path):
    d = minimal()
    d["arms"]["fixed"] = {"weights": [0.5, 0.25, 0.25]}
    d["arms"]["natural"] = {"options": {"prior": [1, 2, 3]}}
    d["search"] = {"scheduler": {"type": "asha"}, "search_seeds": [7], "num_samples": 4}
    d["training"]["lr_warmup_fraction"] = 0.1
    d["training"]["lr_warmup_steps"] = None
    d["model"] = {"overrides": {"n_layer": 3, "dropout": 0.1}}
    d["storage"] = "gs://bucket/x"
    s = load_study(d)
    assert s.search.scheduler.grace_period == 1
    assert s.training.lr_warmup_steps is None and s.training.lr_warmup_fraction == 0.1
    assert load_study(s.to_dict()) == s
    f = tmp_path / "s.yaml"
    f.write_text(dump_study(s))
    assert load_study(f) == s
    assert load_study(str(f)) == s


def test_yaml_string_numbers_are_numbers():
    # PyYAML reads 1e-3 (no dot) as a string.
    s = load_study(yaml.safe_load("name: x\narms: {uniform: {}}\ntraining: {lr: 1e-3}\n"))
    assert s.training.lr == 1e-3
    s = load_study(with_("training.budget", {"tokens": 2.0e6}))
    assert s.training.budget.value == 2_000_000 and isinstance(s.training.budget.value, int)


# -- rejections --------------------------------------------------------------------------------

BAD = [
    # (path to set, value, text the message must contain)
    ("nmae", "x", "nmae"),
    ("name", "bad name!", "name"),
    ("data.source", "wikitext", "data.source"),
    ("training.budget", {"steps": 10, "tokens": 100}, "training.budget"),
    ("training.budget", {"steps": 0}, "training.budget.steps"),
    ("training.budget", {"epochs": -1}, "training.budget.epochs"),
    ("training.budget", {"stesp": 10}, "training.budget.stesp"),
    ("training.budget", {}, "training.budget"),
    ("training.batch_size", 0, "training.batch_size"),
    ("training.batch_size", 16.5, "training.batch_size"),
    ("training.batch_size", True, "training.batch_size"),
    ("training.lr", 0, "training.lr"),
    ("training.lr", -1e-3, "training.lr"),
    ("training.min_lr_ratio", 1.5, "training.min_lr_ratio"),
    ("training.betas", [0.9, 1.0], "training.betas[1]"),
    ("training.betas", [0.9], "training.betas"),
    ("training.grad_clip", 0, "training.grad_clip"),
    ("training.precision", "fp16", "training.precision"),
    ("training.sampler", "systematic", "training.sampler"),
    ("training.mixture_lag", 0, "training.mixture_lag"),
    ("training.lr_warmup_fraction", 1.0, "training.lr_warmup_fraction"),
    ("training", {"lr_warmup_steps": 5, "lr_warmup_fraction": 0.1}, "lr_warmup_fraction"),
    ("training.compile", "yes", "training.compile"),
    ("training.max_failures", -1, "training.max_failures"),
    ("model.preset", "huge", "model.preset"),
    ("model.overrides", {"n_layers": 2}, "model.overrides.n_layers"),
    ("model.overrides", {"dropout": 1.0}, "model.overrides.dropout"),
    ("model.overrides", {"n_head": 3}, "model.overrides.n_head"),
    ("arms.ado.search.gamma1", {"type": "normal", "low": 0.1, "high": 0.5}, "gamma1.type"),
    ("arms.ado.search.gamma1", {"low": 0.1, "high": 0.5}, "gamma1.type"),
    ("arms.ado.search.gamma2", {"type": "uniform", "low": 0.5, "high": 0.4}, "gamma2.low"),
    ("arms.ado.search.gamma2", {"type": "uniform", "low": 0.6, "high": 0.5}, "gamma2.low"),
    ("arms.ado.search.gamma1", {"type": "loguniform", "low": 0.0, "high": 0.5}, "gamma1.low"),
    ("arms.ado.search.gamma1", {"type": "uniform", "low": 0.1, "high": 1.5}, "gamma1.high"),
    ("arms.ado.search.gamma2", {"type": "uniform", "low": 0.0, "high": 0.5}, "gamma2.low"),
    ("arms.ado.search.s", {"type": "uniform", "low": -0.1, "high": 0.5}, "search.s.low"),
    ("arms.ado.search.delta_min", {"type": "uniform", "low": -0.01, "high": 0.05}, "delta_min"),
    ("arms.ado.search.update_interval", {"type": "int", "low": 0, "high": 5}, "update_interval"),
    ("arms.ado.search.ignore_steps", {"type": "int", "low": -1, "high": 5}, "ignore_steps.low"),
    ("arms.ado.search.ignore_steps", {"type": "uniform", "low": 1, "high": 5}, "ignore_steps.type"),
    ("arms.ado.search.ignore_steps", {"type": "int", "low": 1, "high": 10, "step": 4}, "high"),
    ("arms.ado.search.ignore_steps", {"type": "int", "low": 0, "high": 8, "log": True}, "low"),
    ("arms.ado.search.count_mode", {"type": "categorical", "choices": []}, "choices"),
    ("arms.ado.search.count_mode", {"type": "categorical", "choices": ["x"]}, "choices[0]"),
    ("arms.ado.search.count_mode", {"type": "uniform", "low": 0, "high": 1}, "count_mode.type"),
    ("arms.ado.search.gamma_1", {"type": "uniform", "low": 0.1, "high": 0.5}, "gamma_1"),
    ("arms.ado.search.gamma1", {"type": "uniform", "low": 0.1, "high": 0.5, "q": 1}, "gamma1.q"),
    ("arms.ado.options", {"gamma1": 1.5}, "arms.ado.options.gamma1"),
    ("arms.ado.options", {"gamma3": 0.5}, "arms.ado.options.gamma3"),
    ("arms.ado.options", {"s": 0.5}, "arms.ado.search.s"),  # fixed and searched
    ("arms.ado.foo", {}, "arms.ado.foo"),
    ("arms.fixed", {}, "arms.fixed.options.weights"),
    ("arms.fixed", {"weights": [0.5, 0.6]}, "arms.fixed.weights"),
    ("arms.fixed", {"weights": [1.5, -0.5]}, "arms.fixed.weights[1]"),
    ("arms.fixed", {"weights": []}, "arms.fixed.weights"),
    ("arms.natural", {"options": {"prior": [0, 0]}}, "arms.natural.options.prior"),
    ("arms.uniform", {"options": {"x": 1}}, "arms.uniform.options.x"),
    ("arms.exp3", {}, "arms.exp3"),
    ("arms", {}, "arms"),
    ("arms", None, "arms"),
    ("seeds", [], "seeds"),
    ("seeds", [0, 1, 1], "seeds"),
    ("seeds", [0, -1], "seeds[1]"),
    ("seeds", 3, "seeds"),
    ("search.sampler", "grid", "search.sampler"),
    ("search.num_samples", -1, "search.num_samples"),
    ("search.top_k", 0, "search.top_k"),
    ("search.top_k", 9, "search.top_k"),  # more than num_samples (8)
    ("search.search_seeds", [], "search.search_seeds"),
    ("search.search_seeds", [7, 8], "exactly one seed"),
    ("search.scheduler", {"type": "pbt"}, "search.scheduler.type"),
    ("search.scheduler", {"type": "asha", "reduction_factor": 1}, "reduction_factor"),
    ("resources.workers_per_trial", 0, "resources.workers_per_trial"),
    ("resources.cpus_per_worker", 0, "resources.cpus_per_worker"),
    ("resources.gpus_per_worker", -1, "resources.gpus_per_worker"),
    ("resources.max_concurrent_trials", 0, "resources.max_concurrent_trials"),
    ("resources.gpu_per_worker", 1, "resources.gpu_per_worker"),
    ("storage", 42, "storage"),
    ("storage", "", "storage"),
    ("storage", "http://example.org/x", "storage"),
    ("storage", "s3://", "storage"),
    ("metric", "val_acc", "metric"),
    ("mode", "maximum", "mode"),
    ("mode", "max", "mode"),  # losses are minimised
]


@pytest.mark.parametrize("path,value,needle", BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_bad_input_names_the_field(path, value, needle):
    msg = error_of(with_(path, value))
    assert needle in msg, msg
    assert "allowed" in msg, msg


def test_warmup_search_bounds():
    d = minimal()
    del d["arms"]["ado"]["options"]["warmup_steps"]
    ok = with_("arms.ado.search.warmup_steps", {"type": "int", "low": 0, "high": 50}, d)
    assert load_study(ok).search_space("ado")["warmup_steps"].low == 0
    bad = with_("arms.ado.search.warmup_steps", {"type": "int", "low": -1, "high": 50}, d)
    assert "arms.ado.search.warmup_steps.low: got -1" in error_of(bad)


def test_message_shows_value_and_allowed():
    msg = error_of(with_("training.batch_size", 0))
    assert msg.startswith("training.batch_size: got 0; allowed: an integer >= 1"), msg
    msg = error_of(with_("arms.ado.search.gamma1", {"type": "uniform", "low": 0.1, "high": 2}))
    assert "arms.ado.search.gamma1.high: got 2" in msg and "(0, 1]" in msg, msg


def test_unknown_keys_suggest_a_fix():
    assert "did you mean 'batch_size'" in error_of(with_("training.batchsize", 8))
    assert "did you mean 'seeds'" in error_of(with_("sedes", [0]))
    assert "did you mean 'ado'" in error_of(with_("arms.adoo", {}))
    assert "did you mean 'synthetic'" in error_of(with_("data.source", "synthetc"))


def test_required_fields():
    d = minimal()
    del d["name"]
    assert "name: missing" in error_of(d)
    d = minimal()
    del d["arms"]
    assert "arms: missing" in error_of(d)
    assert "<study>" in error_of([1, 2])
    assert "not found" in error_of("no/such/file.yaml")


def test_all_errors_are_collected():
    d = with_("training.batch_size", 0)
    d = with_("seeds", [], d)
    d = with_("metric", "acc", d)
    with pytest.raises(StudyError) as info:
        load_study(d)
    errs = info.value.errors
    assert len(errs) == 3
    assert errs[0].startswith("training.batch_size")
    assert {e.split(":")[0] for e in errs} == {"training.batch_size", "seeds", "metric"}


def test_pretrained_architecture_overrides_rejected():
    d = with_("model", {"preset": "small", "pretrained": "gpt2", "overrides": {"n_layer": 4}})
    assert "model.overrides.n_layer" in error_of(d)
    d = with_("model", {"preset": "small", "pretrained": "gpt2", "overrides": {"dropout": 0.1}})
    assert load_study(d).model.overrides == {"dropout": 0.1}


def test_yaml_file_errors_name_the_file(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\narms: {uniform: {}}\ntraining: {batch_size: 0}\n")
    msg = error_of(f)
    assert "training.batch_size" in msg and "bad.yaml" in msg
    f.write_text("name: [x\n")
    assert "not valid YAML" in error_of(f)


# -- search space ----------------------------------------------------------------------------


def test_search_space_and_optuna_distributions():
    s = load_study(minimal())
    space = s.search_space("ado")
    assert space["gamma1"] == ParamSpec("loguniform", 0.01, 1.0)
    assert space["update_interval"] == ParamSpec("int", 10, 100, step=1)
    dists = {k: v.to_optuna() for k, v in space.items()}
    assert isinstance(dists["gamma1"], optuna.distributions.FloatDistribution)
    assert dists["gamma1"].log
    assert isinstance(dists["update_interval"], optuna.distributions.IntDistribution)
    assert isinstance(dists["count_mode"], optuna.distributions.CategoricalDistribution)
    assert s.search_space("uniform") == {} and s.searched_arms() == ["ado"]


def test_suggest_gives_values_in_range():
    s = load_study(minimal())
    space = s.search_space("ado")
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen = []

    def objective(trial):
        params = {k: spec.suggest(trial, k) for k, spec in space.items()}
        seen.append(params)
        assert set(params) == set(space)
        for k, v in params.items():
            assert space[k].contains(v), (k, v)
        assert set(trial.params) == set(space)
        opts = s.arm_options("ado", params)
        assert opts["warmup_steps"] == 30
        return params["gamma1"]

    study.optimize(objective, n_trials=20)
    assert len(seen) == 20
    assert len({p["gamma1"] for p in seen}) == 20
    assert {p["count_mode"] for p in seen} == {"same_step_size", "own"}


def test_paper_defaults_inside_space():
    s = load_study(minimal())
    d = s.default_config("ado")
    assert d["gamma1"] == 0.1 and d["gamma2"] == 0.1 and d["s"] == 0.5
    assert d["delta_min"] == 0.01 and d["count_mode"] == "same_step_size"
    assert d["update_interval"] == 10  # 2% of 300 steps = 6, rounded up into [10, 100]
    for k, v in d.items():
        assert s.search_space("ado")[k].contains(v), (k, v)
    assert s.default_config("ado", total_steps=2000)["update_interval"] == 40
    # Defaults outside a narrow space are moved to its nearest point.
    narrow = with_("arms.ado.search.gamma1", {"type": "uniform", "low": 0.3, "high": 0.6})
    narrow = with_(
        "arms.ado.search.update_interval", {"type": "int", "low": 1, "high": 9, "step": 4}, narrow
    )
    n = load_study(narrow)
    assert n.default_config("ado")["gamma1"] == 0.3
    assert n.default_config("ado", total_steps=300)["update_interval"] == 5  # 6 -> {1, 5, 9}
    # Usable as an enqueued Optuna point.
    study = optuna.create_study()
    study.enqueue_trial(d)
    trial = study.ask()
    assert {k: spec.suggest(trial, k) for k, spec in s.search_space("ado").items()} == d


def test_paper_defaults_when_budget_not_in_steps():
    s = load_study(with_("training.budget", {"epochs": 3}))
    assert s.default_config("ado")["update_interval"] == 100  # paper's 1,000, clipped
    assert s.default_config("ado", total_steps=1000)["update_interval"] == 20


def test_arm_options_merge_and_reject():
    s = load_study(minimal())
    assert s.arm_options("ado", {"gamma1": 0.2}) == {"warmup_steps": 30, "gamma1": 0.2}
    assert s.arm_options("ado") == {"warmup_steps": 30}
    with pytest.raises(StudyError, match="warmup_steps"):
        s.arm_options("ado", {"warmup_steps": 5})  # fixed, not searched
    with pytest.raises(StudyError, match="gamma1"):
        s.arm_options("ado", {"gamma1": 2.0})
    # A value the policy allows, outside the arm's space.
    with pytest.raises(StudyError, match=r"search.gamma1: .*allowed: loguniform in \[0.01, 1\]"):
        s.arm_options("ado", {"gamma1": 0.005})
    assert s.default_arm_options("ado")["gamma1"] == 0.1
    no_ado = load_study({"name": "x", "arms": {"uniform": {}}})
    with pytest.raises(StudyError, match="arm 'ado'"):
        no_ado.arm_options("ado", {})


def test_baseline_arms_and_confirm_trials():
    d = minimal()
    d["arms"]["fixed"] = {"weights": [0.2, 0.8]}
    d["arms"]["natural"] = {"options": {"prior": [1.0, 3.0]}}
    s = load_study(d)
    assert {label: arm.policy_options() for label, arm in s.arms.items() if label != "ado"} == {
        "uniform": {},
        "natural": {"prior": [1.0, 3.0]},
        "fixed": {"weights": [0.2, 0.8]},
    }
    configs = [s.arm_options("ado", {"gamma1": 0.3}), s.arm_options("ado", {"gamma1": 0.5})]
    trials = s.confirm_trials({"ado": configs})
    assert len(trials) == 2 * (3 + 2)
    assert {t.seed for t in trials} == {0, 1}
    assert [t.config_index for t in trials if t.arm == "ado"] == [0, 1, 0, 1]
    cfg = s.run_config("ado", [t for t in trials if t.arm == "ado"][-1].policy_options, seed=1)
    assert cfg.policy == "ado" and cfg.arm == "ado" and cfg.policy_options["gamma1"] == 0.5
    assert cfg.training.budget.to_dict() == {"steps": 300} and cfg.seed == 1


def test_int_and_categorical_specs():
    p = ParamSpec("int", 1, 9, step=4)
    assert p.contains(5) and not p.contains(6) and not p.contains(13)
    assert p.clip(100) == 9 and p.clip(-3) == 1 and p.clip(6) == 5
    c = ParamSpec("categorical", choices=("a", "b"))
    assert c.clip("z") == "a" and c.contains("b")
    assert ParamSpec("uniform", 0.0, 1.0).clip(2) == 1.0


# -- overrides -------------------------------------------------------------------------------


def test_with_overrides():
    s = load_study("quickstart")
    t = s.with_overrides(
        [
            "training.budget.steps=50",
            "arms.ado.options.gamma1=0.5",
            "resources.workers_per_trial=2",
            "seeds=[3, 4]",
            "search.scheduler.type=asha",
            "training.lr=3e-4",
        ]
    )
    assert isinstance(t, Study) and t is not s
    assert t.training.budget.to_dict() == {"steps": 50}
    assert t.arms["ado"].options["gamma1"] == 0.5
    assert "gamma1" not in t.search_space("ado")  # fixing an option takes it out of the search
    assert t.resources.workers_per_trial == 2
    assert t.seeds == [3, 4] and t.search_seeds == [5]
    assert t.search.scheduler.type == "asha"
    assert t.training.lr == 3e-4
    assert s.training.budget.to_dict() == {"steps": 300}  # the original is unchanged


def test_overrides_replace_exclusive_groups():
    s = load_study("quickstart")
    t = s.with_overrides(["training.budget.tokens=100000"])
    assert t.training.budget.to_dict() == {"tokens": 100000}
    t = s.with_overrides(["training.lr_warmup_fraction=0.1"])
    assert t.training.lr_warmup_steps is None and t.training.lr_warmup_fraction == 0.1
    t = t.with_overrides(["training.lr_warmup_steps=5"])
    assert t.training.lr_warmup_steps == 5 and t.training.lr_warmup_fraction is None


@pytest.mark.parametrize(
    "item,needle",
    [
        ("training.batch_size=0", "training.batch_size"),
        ("training.budget.steps=-5", "training.budget.steps"),
        ("training.batchsize=8", "did you mean 'batch_size'"),
        ("arms.ado.search.gamma2.high=3", "arms.ado.search.gamma2.high"),
        ("seeds=[1, 1]", "seeds"),
        ("name.sub=1", "name"),
        ("training.lr", "key=value"),
        ("=3", "dotted key"),
        ("training.lr=[1", "not valid YAML"),
    ],
)
def test_overrides_revalidate(item, needle):
    s = load_study("quickstart")
    with pytest.raises(StudyError) as info:
        s.with_overrides([item])
    assert needle in str(info.value), str(info.value)


# -- budget ----------------------------------------------------------------------------------


def test_budget_steps():
    base = minimal()
    base["training"]["batch_size"] = 16
    steps = load_study(base)
    assert steps.budget_steps(seq_len=64, total_train_sequences=10) == 300
    tokens = load_study(with_("training.budget", {"tokens": 100_000}, base))
    assert tokens.budget_steps(seq_len=64, total_train_sequences=10) == math.ceil(100_000 / 1024)
    assert tokens.budget_steps(64, 10) == 98
    exact = load_study(with_("training.budget", {"tokens": 16 * 64 * 7}, base))
    assert exact.budget_steps(64, 1) == 7
    epochs = load_study(with_("training.budget", {"epochs": 3}, base))
    assert epochs.budget_steps(seq_len=100, total_train_sequences=4200) == math.ceil(3 * 4200 / 16)
    half = load_study(with_("training.budget", {"epochs": 0.5}, base))
    assert half.budget_steps(100, 33) == 2  # ceil(16.5 / 16)
    with pytest.raises(ValueError, match="seq_len"):
        steps.budget_steps(0, 10)
    with pytest.raises(ValueError, match="total_train_sequences"):
        steps.budget_steps(64, 0)
