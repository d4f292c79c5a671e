"""The .pyi stub documents every public name of the module, and only those."""

import ast
import pathlib

import marbm
from marbm import _marbm


def stub_names():
    tree = ast.parse((pathlib.Path(marbm.__file__).parent / "_marbm.pyi").read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
    return names


def test_stub_covers_the_module():
    stub = stub_names()
    public = {name for name in dir(_marbm) if not name.startswith("_")}
    assert public <= set(stub), public - set(stub)
    assert set(stub) <= public, set(stub) - public
    for name, node in stub.items():
        assert ast.get_docstring(node), f"{name} has no docstring in the stub"


def test_stub_methods_exist():
    for name, node in stub_names().items():
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    assert hasattr(getattr(_marbm, name), item.name), f"{name}.{item.name}"


def test_train_keywords_match_the_stub():
    node = stub_names()["train"]
    stub_keywords = {a.arg for a in node.args.kwonlyargs}
    # The module's own signature text lists the explicit keywords.
    doc = _marbm.train.__doc__ or ""
    for keyword in ("hidden", "init", "method", "k", "lr", "batch", "iters", "epochs", "seed", "backend",
                    "eval_every", "momentum", "weight_decay", "init_sigma", "init_visible_bias", "chains",
                    "threads", "exact_max_units", "test_data", "callback", "sample_positive_hidden",
                    "exact_metrics", "lr_schedule", "lr_final", "checkpoint_every", "checkpoint", "resume", "out"):
        assert keyword in stub_keywords
        assert keyword in doc


def test_study_keywords_match_the_stub():
    node = stub_names()["study"]
    stub_keywords = {a.arg for a in node.args.kwonlyargs}
    doc = _marbm.study.__doc__ or ""
    for keyword in ("hidden", "methods", "runs", "iters", "batch", "lr", "k", "eval_every", "seed", "init_sigma",
                    "backend", "threads", "momentum", "weight_decay", "chains", "test_data", "lr_schedule",
                    "lr_final", "sample_positive_hidden", "out", "plot", "keep_models"):
        assert keyword in stub_keywords
        assert keyword in doc
