"""Project conventions: notebooks are committed clean with a papermill `parameters` cell that reads
$GPLAN_SCALE, and every named scale configures every notebook."""
from __future__ import annotations

import json
import re

import pytest

from gplan_lib.core.config import load_scale, scale_names
from gplan_lib.core.paths import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist_in_order():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))] and len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit notebooks clean"
    first = code[0]
    assert "parameters" in first["metadata"].get("tags", []), "papermill runs a notebook without one silently"
    assert 'os.environ.get("GPLAN_SCALE", "cpu")' in "".join(first["source"])
    longest = max(len("".join(c["source"]).splitlines()) for c in code)
    assert longest <= 30, "a cell longer than a screen is library code in the wrong place"


def test_every_scale_configures_every_stage():
    for name in scale_names():
        cfg = load_scale(name)
        assert {"synth", "picd", "sc_dpo"} <= set(cfg), name
        assert cfg["picd"]["train"]["polish_lr"] < cfg["picd"]["train"]["lr"], name
    full = load_scale("full-4b")["picd"]["train"]
    # B* by the paper's rule (p90 of B over the training set; 9 on the paper's data), not its number
    assert (full["epochs"], full["b_star"], full["lr"], full["polish_lr"], full["warmup_ratio"]) == (13, None, 5e-6, 1e-6, 0.01)
    dpo = load_scale("full-4b")["sc_dpo"]
    assert dpo["train"]["lr"] == 2e-7 and dpo["loss"]["beta"] == 0.2 and dpo["loss"]["lambda_gl"] == 10.0
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        load_scale("huge")


def test_notebooks_write_under_runs_and_publish_copies_what_changed(tmp_path, monkeypatch, capsys):
    from gplan_lib.cli import main
    from gplan_lib.core import config
    monkeypatch.setattr(config, "OUTPUTS", tmp_path / "runs")
    monkeypatch.setattr(config, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(config, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(config, "DATA", tmp_path / "data")
    monkeypatch.setattr("gplan_lib.cli.REPO", tmp_path)
    dirs = config.output_dirs("ci")
    assert dirs.results == tmp_path / "runs" / "ci" / "results" and dirs.figures == tmp_path / "runs" / "ci" / "figures"
    (dirs.results / "02_picd.json").write_text("{}")
    (dirs.figures / "02.png").write_bytes(b"png")
    assert main(["publish", "--scale", "ci"]) == 0
    assert "updated results/ci/02_picd.json" in capsys.readouterr().out
    assert (tmp_path / "figures" / "ci" / "02.png").read_bytes() == b"png"
    assert config.publish("ci") == []
    (dirs.results / "02_picd.json").write_text('{"acc1": 1}')
    assert config.publish("ci") == [tmp_path / "results" / "ci" / "02_picd.json"]


def test_publish_cleans_executed_notebooks_of_progress_bars_and_widget_state(tmp_path, monkeypatch):
    """Issue 21: executed notebooks readable on a code host: figures and tables kept, progress gone, widgets named."""
    from gplan_lib.core import config
    monkeypatch.setattr(config, "OUTPUTS", tmp_path / "runs")
    monkeypatch.setattr(config, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(config, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(config, "DATA", tmp_path / "data")
    monkeypatch.setattr(config, "DOCS", tmp_path / "docs")
    widget = "application/vnd.jupyter.widget-view+json"
    outputs = [{"output_type": "display_data", "metadata": {}, "data": {widget: {"model_id": "a"},
                "text/plain": ["training picd-calr: 40%|####      | 4/10 [00:01<00:02, 2.0it/s]"]}},
               {"output_type": "stream", "name": "stderr", "text": ["baselines:  50%|#####     | 5/10\r"]},
               {"output_type": "display_data", "metadata": {}, "data": {widget: {"model_id": "b"},
                "text/plain": ["VBox(children=(IntSlider(value=0),))"]}},
               {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBOR", "text/plain": ["<Figure>"]}},
               {"output_type": "stream", "name": "stdout", "text": ["wrote results\n"]}]
    nb = {"cells": [{"cell_type": "code", "id": "random1", "metadata": {"papermill": {"duration": 1.0},
                     "tags": ["injected-parameters"]}, "source": [], "outputs": outputs, "execution_count": 1}], "metadata": {"widgets": {"state": "x" * 1000}}, "nbformat": 4, "nbformat_minor": 5}
    config.output_dirs("ci")
    (tmp_path / "runs" / "ci" / "02_picd.ipynb").write_text(json.dumps(nb))
    assert config.publish("ci", ("notebooks",)) == [tmp_path / "docs" / "notebooks" / "ci" / "02_picd.ipynb"]
    clean = json.loads((tmp_path / "docs" / "notebooks" / "ci" / "02_picd.ipynb").read_text())
    kept = clean["cells"][0]["outputs"]
    assert "widgets" not in clean["metadata"] and "papermill" not in clean["cells"][0]["metadata"]
    assert clean["cells"][0]["id"] == "injected-parameters"  # papermill's random id would change every rerun
    assert [list(o.get("data", {"stream": 1})) for o in kept] == [["text/plain"], ["image/png", "text/plain"], ["stream"]]
    assert "interactive widget" in kept[0]["data"]["text/plain"][0]
    assert config.publish("ci", ("notebooks",)) == []
    with pytest.raises(ValueError, match="cannot publish"):
        config.publish("ci", ("weights",))


def test_every_scale_announces_itself_in_every_notebook():
    from gplan_lib.core.config import announce
    for name in scale_names():
        about = load_scale(name)["about"]
        assert {"purpose", "numbers", "time"} <= set(about), name
        for nb in ("00", "01", "02", "03", "04"):
            text = announce(name, nb).data
            assert f"`{name}`" in text and about["time"][nb] in text
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert f'config.announce(scale, "{nb.name[:2]}")' in code, nb.name


def test_gplan_gsisr_none_runs_as_a_user_without_the_released_rows(monkeypatch):
    from gplan_lib.core import paths
    monkeypatch.setenv("GPLAN_GSISR", "none")
    assert paths.released_csv() is None
    assert "Skipped: the sim-to-real tables" in paths.skipped("the sim-to-real tables")
    assert "test.csv" in paths.skipped("x")


STAGES = ("synthesis", "training", "picd", "sc_dpo", "evaluation", "studies")
#: The one stage package each notebook calls (besides core, which holds the reporting module).
NOTEBOOK_STAGE = {"00": "synthesis", "01": "synthesis", "02": "picd", "03": "sc_dpo", "04": "evaluation"}


def _imports(text: str) -> set[str]:
    return set(re.findall(r"(?:from|import) gplan_lib\.([a-z_]+)", text)) | {
        m for m in re.findall(r"^\s*from \.\.([a-z_]+)", text, re.M)}


def test_core_imports_no_stage_and_no_module_is_over_400_lines():
    lib = REPO / "gplan_lib"
    for path in (lib / "core").glob("*.py"):
        assert not _imports(path.read_text()) & set(STAGES), f"{path.name} imports a stage"
    assert {p.name for p in lib.iterdir() if p.is_dir() and not p.name.startswith("_")} >= {"core", *STAGES}
    long = {str(p.relative_to(lib)): n for p in lib.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_each_notebook_calls_one_stage_package_and_only_its_views():
    for nb in NOTEBOOKS:
        code = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        stages = _imports(code) - {"core"}
        assert stages <= {NOTEBOOK_STAGE[nb.name[:2]]}, (nb.name, stages)
        views_from = set(re.findall(r"from gplan_lib\.(\w+)(?:\.\w+)* import .*\bviews\b", code))
        assert views_from <= {NOTEBOOK_STAGE[nb.name[:2]], "core"}, (nb.name, views_from)  # core.views: no stage


def test_every_scale_builds_every_stage_config_and_a_misspelt_key_is_named():
    from gplan_lib.core.config import ConfigError, build, section
    from gplan_lib.evaluation.config import EvaluationConfig
    from gplan_lib.picd.config import PICDConfig
    from gplan_lib.sc_dpo.config import SCDPOConfig
    from gplan_lib.studies.config import RegimesConfig
    from gplan_lib.studies.sim_to_real import SimToRealConfig
    from gplan_lib.synthesis.config import SynthConfig
    for name in scale_names():
        for cls in (PICDConfig, SCDPOConfig, EvaluationConfig, SynthConfig):
            cls.from_scale(name)
        if "regimes" in load_scale(name):
            RegimesConfig.from_scale(name)
        if "sim_to_real" in load_scale(name):
            SimToRealConfig.from_scale(name)
    picd = dict(section("cpu", "picd"))
    with pytest.raises(ConfigError, match=r"cpu\.picd\.train: unknown key 'warmup_ratoi'"):
        build(PICDConfig, {**picd, "train": {**picd["train"], "warmup_ratoi": 0.1}}, "cpu.picd")
    with pytest.raises(ConfigError, match=r"cpu\.picd\.train\.batch_size: '8' is not"):
        build(PICDConfig, {**picd, "train": {**picd["train"], "batch_size": "8"}}, "cpu.picd")
    with pytest.raises(ConfigError, match=r"cpu\.picd: missing key 'max_len'"):
        build(PICDConfig, {k: v for k, v in picd.items() if k != "max_len"}, "cpu.picd")
    with pytest.raises(ConfigError, match="polish_lr < lr"):
        build(PICDConfig, {**picd, "train": {**picd["train"], "polish_lr": 1.0}}, "cpu.picd")
    regimes = dict(section("cpu", "regimes"))
    with pytest.raises(ConfigError, match="'max_grad_nrom'"):
        build(RegimesConfig, {**regimes, "dpo": [{"variant": "sc", "max_grad_nrom": 0.0}]}, "cpu.regimes").dpo_runs()


def test_run_keys_hash_the_config_as_written():
    """A default added to a dataclass does not change the key of a run trained before it."""
    from gplan_lib.core.config import as_written, replace, section
    from gplan_lib.picd.config import PICDConfig
    cfg = PICDConfig.from_scale("cpu")
    assert as_written(cfg.train) == section("cpu", "picd")["train"]
    assert as_written(replace(cfg.train, lr=1e-3)) == {**section("cpu", "picd")["train"], "lr": 1e-3}


def test_published_results_record_what_produced_them(tmp_path):
    """Every result a notebook or a study publishes goes through ``files.write_result``, which records the CPU
    capability, the CPU and the library versions of the process that computed it (issue 23: a result moves with
    the machine's vector kernels); a result that brings its own provenance keeps it."""
    from gplan_lib.core.files import write_result
    from gplan_lib.core.provenance import provenance
    for nb in NOTEBOOKS:
        code = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        assert not re.search(r"write_json\([^)]*results", code), nb.name
    for module in ("core/reporting.py", "studies/regimes.py", "studies/latency_check.py", "studies/sim_to_real.py"):
        text = (REPO / "gplan_lib" / module).read_text()
        assert "write_result(" in text or "write_study(" in text, module
    written = json.loads(write_result(tmp_path / "r.json", {"acc1": 0.5}).read_text())
    assert written["provenance"] == provenance() and {"cpu_capability", "torch", "mkl", "onednn"} <= set(written["provenance"])
    kept = json.loads(write_result(tmp_path / "k.json", {"provenance": {"cpu": "x"}}).read_text())
    assert kept["provenance"] == {"cpu": "x"}


def test_every_committed_result_says_what_produced_it():
    """Every JSON under results/cpu/ carries a provenance entry with the CPU capability and the library versions
    (a study's per-seed entries each), or - for a file made before provenance existed - says what was not
    recorded (issue 23)."""
    files = sorted((REPO / "results" / "cpu").glob("*.json"))
    assert files
    for path in files:
        prov = json.loads(path.read_text()).get("provenance")
        assert isinstance(prov, dict), path.name
        entries = list(prov.values()) if all(isinstance(v, dict) for v in prov.values()) else [prov]
        for entry in entries:
            assert {"cpu_capability", "torch", "transformers"} <= set(entry), path.name
            if entry.get("recorded") is False:
                assert entry["note"] and entry["torch"], path.name
            else:
                assert entry["cpu_capability"] and entry["mkl"] and entry["onednn"], path.name
