"""Files and records: train(out=...) and its summary against `marbm train --out --json`, and
study(out=DIR) against `marbm study --out DIR`. The comparisons run the command-line tool
(MARBM_CLI, set by ctest) and are skipped without it."""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import marbm

BARS = "shifting-bars:6:3"


def cli():
    path = os.environ.get("MARBM_CLI")
    if not path:
        pytest.skip("MARBM_CLI (the marbm command-line tool) is not set; ctest sets it")
    return path


def run_cli(*arguments):
    run = subprocess.run([cli(), *arguments], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def without(mapping, *keys):
    return {k: v for k, v in mapping.items() if k not in keys}


def test_train_out_and_summary_match_the_command_line(tmp_path):
    py_path = str(tmp_path / "py.safetensors")
    cli_path = str(tmp_path / "cli.safetensors")
    result = marbm.train(BARS, hidden=6, method="mode", iters=300, batch=6, lr=0.15, seed=5, eval_every=100,
                         threads=1, p_max=0.3, momentum=0.5, test_data=BARS,
                         out=py_path)
    lines = run_cli("train", "--data", BARS, "--hidden", "6", "--method", "mode", "--iters", "300", "--batch", "6",
                    "--lr", "0.15", "--seed", "5", "--eval-every", "100", "--threads", "1", "--p-max", "0.3",
                    "--momentum", "0.5", "--test-data", BARS, "--out", cli_path, "--json").splitlines()
    # The model: the same bits, and the same metadata but for who wrote it and the time taken.
    py_model, py_meta = marbm.load(py_path, with_metadata=True)
    cli_model, cli_meta = marbm.load(cli_path, with_metadata=True)
    assert py_model == cli_model == result.model
    assert py_meta["created_by"] == "marbm.train " + marbm.version()
    assert cli_meta["created_by"] == "marbm train " + marbm.version()
    assert without(py_meta, "created_by", "seconds") == without(cli_meta, "created_by", "seconds")
    assert py_meta["mode_steps_taken"] == str(result.mode_steps) and py_meta["iterations"] == "300"
    assert float(py_meta["final_kl"]) == result.history["kl"][-1]
    # The summary: --json's last line, key for key (times aside); its history is the evaluation lines.
    cli_summary = json.loads(lines[-1])
    summary = result.summary
    assert summary["out"] == py_path and cli_summary["out"] == cli_path
    assert without(summary, "out", "seconds", "history") == without(cli_summary, "out", "seconds", "history")
    assert [without(p, "seconds") for p in summary["history"]] == [
        without(json.loads(line), "seconds") for line in lines[:-1]]
    assert [p["iteration"] for p in summary["history"]] == [0, 100, 200, 300]
    assert summary["kl"] == result.history["kl"][-1] and summary["mode_steps"] == result.mode_steps
    assert summary["test_log_z_method"] == "exact"


def test_summary_without_evaluations_has_no_history(tmp_path):
    data = np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0]], np.uint8)
    result = marbm.train(data, hidden=2, iters=50, batch=3, seed=2)
    summary = result.summary
    assert "history" not in summary and "event" not in summary
    assert summary["data"] == "array 3x3" and summary["out"] == ""
    assert summary["rows_distinct"] is True
    assert summary["n_visible"] == 3 and summary["n_hidden"] == 2 and summary["iterations"] == 50
    assert summary["mean_log_likelihood"] == pytest.approx(marbm.mean_log_likelihood(result.model, data), abs=1e-9)
    big = marbm.train(data, hidden=2, iters=5, exact_metrics=False)
    assert big.summary["kl"] is None and big.summary["log_z"] is None


def test_train_out_is_checked_before_training_and_written_atomically(tmp_path):
    with pytest.raises(marbm.UsageError, match=r"^out: folder '.*nowhere' does not exist$"):
        marbm.train(BARS, hidden=6, iters=10, out=str(tmp_path / "nowhere" / "m.safetensors"))
    with pytest.raises(marbm.UsageError, match="is a folder, not a file name"):
        marbm.train(BARS, hidden=6, iters=10, out=str(tmp_path))
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(b"keep")
    locked.chmod(0o444)  # refused by its write bits, even for root
    with pytest.raises(marbm.UsageError, match="is read-only; it is not replaced"):
        marbm.train(BARS, hidden=6, iters=10, out=str(locked))
    assert locked.read_bytes() == b"keep"
    path = tmp_path / "m.safetensors"
    marbm.train(BARS, hidden=6, iters=10, out=str(path))
    assert marbm.load(str(path)).n_hidden == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked.safetensors", "m.safetensors"]


def test_checkpoints_go_to_out_when_no_other_file_is_given(tmp_path):
    path = str(tmp_path / "run.safetensors")
    settings = dict(hidden=6, method="pcd", batch=4, iters=200, seed=3)
    done = marbm.train(BARS, checkpoint_every=50, out=path, **settings)
    assert marbm.load(path) == done.model
    # The last checkpoint (after update 150) was replaced by the final model, with its metadata.
    assert marbm.load(path, with_metadata=True)[1]["iterations"] == "200"
    checkpoint = str(tmp_path / "c.safetensors")
    marbm.train(BARS, checkpoint_every=50, checkpoint=checkpoint, iters=120, **without(settings, "iters"))
    meta = marbm.load(checkpoint, with_metadata=True)[1]
    assert meta["iterations"] == "100" and meta["iterations_planned"] == "120" and meta["method"] == "pcd"


def test_a_diverged_run_writes_its_last_finite_model(tmp_path):
    path = tmp_path / "diverged.safetensors"
    with pytest.raises(marbm.TrainingDiverged, match="wrote the last finite model") as caught:
        marbm.train(BARS, hidden=6, iters=2000, batch=6, lr=1e38, momentum=0.9, init_sigma=1.0, out=str(path))
    model, meta = marbm.load(str(path), with_metadata=True)
    assert model == caught.value.last_finite_model
    assert meta["diverged_at"] == str(caught.value.noticed_at)
    assert meta["iterations"] == str(caught.value.last_finite_iteration)


STUDY = dict(hidden=6, methods=["cd", "mode"], runs=2, iters=400, batch=6, lr=0.2, eval_every=100, seed=3,
             threads=2, lr_schedule="linear", lr_final=0.05, test_data=BARS, p_max=0.2)
STUDY_CLI = ["--data", BARS, "--hidden", "6", "--methods", "cd,mode", "--runs", "2", "--iters", "400", "--batch", "6",
             "--lr", "0.2", "--eval-every", "100", "--seed", "3", "--threads", "2", "--lr-schedule", "linear",
             "--lr-final", "0.05", "--test-data", BARS, "--p-max", "0.2"]


def test_study_out_writes_the_command_lines_files(tmp_path):
    py_dir, cli_dir = tmp_path / "py", tmp_path / "cli"
    result = marbm.study(BARS, out=str(py_dir), keep_models=True, **STUDY)
    run_cli("study", *STUDY_CLI, "--keep-models", "--out", str(cli_dir))
    assert (py_dir / "kl.csv").read_bytes() == (cli_dir / "kl.csv").read_bytes()
    py_summary = json.loads((py_dir / "summary.json").read_text())
    cli_summary = json.loads((cli_dir / "summary.json").read_text())
    # Equal but for the measured times.
    for summary in (py_summary, cli_summary):
        summary["settings"].pop("wall_seconds")
        for method in ("cd", "mode"):
            summary[method].pop("seconds")
    assert py_summary == cli_summary
    assert (py_dir / "kl.png").exists() == (cli_dir / "kl.png").exists()
    if (cli_dir / "kl.png").exists():
        assert (py_dir / "kl.png").read_bytes() == (cli_dir / "kl.png").read_bytes()
        assert result["files"]["png"] == str(py_dir / "kl.png")
    assert not (py_dir / "INCOMPLETE").exists()
    names = sorted(p.name for p in (cli_dir / "models").iterdir())
    assert names == ["cd-0.safetensors", "cd-1.safetensors", "mode-0.safetensors", "mode-1.safetensors"]
    assert sorted(p.name for p in (py_dir / "models").iterdir()) == names
    for name in names:
        py_model, py_meta = marbm.load(str(py_dir / "models" / name), with_metadata=True)
        cli_model, cli_meta = marbm.load(str(cli_dir / "models" / name), with_metadata=True)
        assert py_model == cli_model
        assert without(py_meta, "created_by") == without(cli_meta, "created_by")
    # The arrays returned are the file's numbers.
    rows = [line.split(",") for line in (py_dir / "kl.csv").read_text().splitlines()[1:]]
    cd_final = [float(r[3]) for r in rows if r[0] == "cd" and r[2] == "400"]
    np.testing.assert_allclose(result["methods"]["cd"]["kl"][:, -1], cd_final, rtol=1e-5)
    assert result["files"]["csv"] == str(py_dir / "kl.csv")
    assert result["files"]["models"] == str(py_dir / "models")
    assert result["methods"]["mode"]["test_mean_log_likelihood"].shape == (2, 5)
    assert py_summary["mode"]["median_final_test_mean_log_likelihood"] == pytest.approx(
        result["methods"]["mode"]["median_final_test_mean_log_likelihood"])


def test_study_without_plot_and_bad_folders(tmp_path):
    quick = dict(runs=1, iters=20, eval_every=10, methods=["cd"], threads=1)
    result = marbm.study(BARS, out=str(tmp_path / "s"), plot=False, **quick)
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith(".")) == [
        "kl.csv", "summary.json"]
    assert result["files"]["png"] is None and result["files"]["models"] is None
    with pytest.raises(marbm.UsageError, match="^out: the parent folder of '.*' does not exist$"):
        marbm.study(BARS, out=str(tmp_path / "no" / "such"), **quick)
    (tmp_path / "file").write_text("x")
    with pytest.raises(marbm.UsageError, match="^out: '.*file' exists and is not a folder$"):
        marbm.study(BARS, out=str(tmp_path / "file"), **quick)
    with pytest.raises(marbm.UsageError, match="keep_models needs out=DIR"):
        marbm.study(BARS, keep_models=True, **quick)
    with pytest.raises(marbm.UsageError, match="chains applies only to the pcd method"):
        marbm.study(BARS, chains=4, **quick)
