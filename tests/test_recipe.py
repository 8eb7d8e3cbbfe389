"""Recipe validation: every problem reported as FILE:LINE: key: message, exit code 2,
nothing written to the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from labbuilder.cli import main
from labbuilder.errors import RecipeError
from labbuilder.recipe import load_recipe, parse_size

DATA = Path(__file__).parent / "data" / "recipes"
REPO = Path(__file__).resolve().parent.parent
BAD = sorted(p.stem for p in DATA.glob("*.yaml"))


@pytest.mark.parametrize("name", BAD)
def test_bad_recipe_message_is_exact(name, golden, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(RecipeError) as e:
        load_recipe(Path("tests/data/recipes") / f"{name}.yaml")
    golden(f"recipe-{name}.txt", "\n".join(e.value.lines()) + "\n")


@pytest.mark.parametrize("name", BAD)
def test_bad_recipe_cli_exit_2_and_cache_untouched(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["image", "build", f"tests/data/recipes/{name}.yaml",
                                       "--cache", str(cache)])
    assert result.exit_code == 2
    assert f"tests/data/recipes/{name}.yaml:" in result.output
    assert "Traceback" not in result.output
    assert not cache.exists()


def test_shipped_recipe_is_valid_and_hash_is_stable():
    a = load_recipe(REPO / "images" / "debian-12.yaml")
    b = load_recipe(REPO / "images" / "debian-12.yaml")
    assert a.suite == "bookworm" and "openssh-server" in a.packages
    assert a.sysprep_operations == "defaults,-customize"
    assert "net.ifnames=0" in a.kernel_cmdline
    assert a.hash() == b.hash() and len(a.hash()) == 64


def test_hash_changes_with_packages(tmp_path):
    text = (REPO / "images" / "debian-12.yaml").read_text()
    (tmp_path / "r.yaml").write_text(text.replace("  - sudo\n", ""))
    assert load_recipe(tmp_path / "r.yaml").hash() != load_recipe(REPO / "images" / "debian-12.yaml").hash()


@pytest.mark.parametrize("text,expected", [("3G", 3 << 30), ("512M", 512 << 20), ("2GiB", 2 << 30),
                                           (1024, 1024), ("lots", None)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected
