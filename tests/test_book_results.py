"""The chapters find the recorded results under bench/ and say when they are missing."""
import json
import re
from pathlib import Path

import pytest

from smallunet.book.results import REPO, bench_file, bench_json, markdown_body


def test_finds_the_checkouts_results():
    path = bench_file("fid_vs_steps.md")
    assert path is not None and path.resolve() == (REPO / "bench" / "fid_vs_steps.md").resolve()
    assert bench_json("guidance.json")["n_per_class"] >= 1
    assert bench_file("no_such_result.json") is None and bench_json("no_such_result.json") is None


def test_beside_the_chapters_first(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "chapters").mkdir()
    (tmp_path / "bench" / "x.json").write_text(json.dumps({"a": 1}))
    assert bench_json("x.json", start=tmp_path / "chapters") == {"a": 1}


def test_markdown_body_drops_title_and_figures(tmp_path):
    page = tmp_path / "r.md"
    page.write_text("# Title\n\ntext\n\n| a |\n|---|\n\n![plot](r.png)\nafter\n")
    assert markdown_body(page) == "\ntext\n\n| a |\n|---|\n\n"


@pytest.mark.parametrize("bad", ["", "../README.md", "bench/x.json", None])
def test_rejects_what_is_not_a_file_name(bad):
    with pytest.raises(ValueError, match="name must be a file name in bench/"):
        bench_file(bad)


def test_every_result_a_chapter_reads_is_recorded():
    root = Path(__file__).resolve().parents[1]
    names = {m for nb in (root / "chapters").glob("*.ipynb")
             for m in re.findall(r'bench_(?:file|json)\(\\"([^"\\]+)\\"', nb.read_text())}
    assert names, "no chapter reads bench/ through smallunet.book.results"
    assert all((root / "bench" / n).is_file() for n in sorted(names)), names


def test_the_study_plot_needs_arms_and_names_each():
    from smallunet.book.plotting.training import recipe_study
    with pytest.raises(ValueError, match="no arms"):
        recipe_study({"arms": {}, "floor": {"fid_mean": 1.0}, "n": 8, "minutes_per_arm": 1})
    arm = dict(images=640, fid_mean=200.0, fid_std=3.0)
    fig = recipe_study({"arms": {"seed": arm, "all": {**arm, "fid_mean": 150.0}}, "floor": {"fid_mean": 5.0},
                        "n": 8, "minutes_per_arm": 1})
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["all", "seed"]
