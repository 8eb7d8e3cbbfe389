"""Recipe validation: every problem reported as FILE:LINE: key: message, exit code 2,
nothing written to the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from labbuilder.cli import main
from labbuilder.model.errors import RecipeError
from labbuilder.model.recipe import load_recipe, parse_size

DATA = Path(__file__).parent / "data" / "recipes"
REPO = Path(__file__).resolve().parent.parent
BAD = sorted(p.stem for p in DATA.glob("*.yaml"))
# Recipes that extend another (layered/*): their problems point at the child's own lines.
LAYERED_BAD = ["bad-child", "unknown-parent", "cycle-a", "self", "child-of-broken"]


@pytest.mark.parametrize("name", BAD + [f"layered/{n}" for n in LAYERED_BAD])
def test_bad_recipe_message_is_exact(name, golden, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(RecipeError) as e:
        load_recipe(Path("tests/data/recipes") / f"{name}.yaml")
    golden(f"recipe-{name.replace('/', '-')}.txt", "\n".join(e.value.lines()) + "\n")


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


# Layered recipes (extends): flattened into one Recipe, errors at the child's own lines.

LAYERED = DATA / "layered"
# images/debian-12.yaml's hash: cached images are keyed by it, so code that reads recipes
# (layering, new optional keys) must not change it; a change of the recipe itself does,
# and updates this line (the last: the drop-ins that skip cloud-init's late stages).
DEBIAN_12_HASH = "0b2d403f611479fcb9869fba70a7ecd1cecf704d524939e153578376e2424146"


def test_debian_12_hash_is_unchanged_by_layering():
    assert load_recipe(REPO / "images" / "debian-12.yaml").hash() == DEBIAN_12_HASH


def test_bad_layered_recipe_cli_exit_2_and_cache_untouched(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(main, ["image", "build", "tests/data/recipes/layered/unknown-parent.yaml",
                                       "--cache", str(cache)])
    assert result.exit_code == 2
    assert "unknown-parent.yaml:3: extends: no recipe 'debian-13'" in result.output
    assert "Traceback" not in result.output and not cache.exists()


def test_child_is_parent_plus_child():
    base, child = load_recipe(LAYERED / "base.yaml"), load_recipe(LAYERED / "child.yaml")
    assert (child.name, child.description, child.extends) == ("child", "a child of base", "base")
    assert child.path == str(LAYERED / "child.yaml")
    assert child.packages == ("openssh-server", "sudo", "mariadb-server")
    assert [(f.path, f.content, f.mode) for f in child.files] == [
        ("/etc/issue", "base", 0o644), ("/etc/motd", "child", 0o644), ("/etc/child", "only here", 0o600)]
    # The child's word on a unit wins: chrony moves from the parent's enable to disable.
    assert child.enable == ("systemd-networkd",)
    assert child.mask == ("apt-daily.timer",)
    assert child.disable == ("chrony.service", "mariadb.service")
    assert (child.size_bytes, child.min_ram_mb, child.os_version) == (4 << 30, 1024, "12")
    inherited = ("suite", "distro", "mirror", "variant", "kernel_cmdline", "sysprep_operations", "outputs")
    assert all(getattr(child, k) == getattr(base, k) for k in inherited)
    assert child.hash() != base.hash()


def test_extends_chains_and_a_grandchild_can_enable_what_its_parent_disabled():
    grandchild = load_recipe(LAYERED / "grandchild.yaml")
    assert grandchild.extends == "child" and grandchild.size_bytes == 4 << 30
    assert grandchild.enable == ("systemd-networkd", "mariadb.service")
    assert grandchild.disable == ("chrony.service",)


def test_disable_changes_the_hash_and_an_empty_disable_does_not(tmp_path):
    text = (LAYERED / "base.yaml").read_text()
    (tmp_path / "empty.yaml").write_text(text.replace("  mask: [apt-daily.timer]\n",
                                                      "  mask: [apt-daily.timer]\n  disable: []\n"))
    (tmp_path / "some.yaml").write_text(text.replace("  mask: [apt-daily.timer]\n",
                                                     "  mask: [apt-daily.timer]\n  disable: [ssh.service]\n"))
    base = load_recipe(LAYERED / "base.yaml").hash()
    assert load_recipe(tmp_path / "empty.yaml").hash() == base
    assert load_recipe(tmp_path / "some.yaml").hash() != base


def test_extends_is_not_hashed_only_what_it_flattens_to(tmp_path):
    (tmp_path / "base.yaml").write_text((LAYERED / "base.yaml").read_text())
    (tmp_path / "same.yaml").write_text("name: base\nextends: base\n")
    assert load_recipe(tmp_path / "same.yaml").hash() == load_recipe(tmp_path / "base.yaml").hash()


def test_gridka_base_extends_debian_12_and_disables_its_heavy_services():
    parent = load_recipe(REPO / "images" / "debian-12.yaml")
    gridka = load_recipe(REPO / "images" / "gridka-base.yaml")
    assert gridka.extends == "debian-12"
    assert gridka.packages[:len(parent.packages)] == parent.packages
    for pkg in ("mariadb-server", "mariadb-client", "rabbitmq-server", "chrony", "python3-pymysql",
                "lvm2", "bridge-utils", "iptables", "curl"):
        assert pkg in gridka.packages
    assert {"mariadb.service", "rabbitmq-server.service", "chrony.service"} <= set(gridka.disable)
    assert gridka.files[:len(parent.files)] == parent.files
    assert gridka.enable == parent.enable and gridka.mask == parent.mask
    assert gridka.hash() != parent.hash()


def test_vagrant_recipe_extends_debian_12_and_adds_the_box_output():
    r = load_recipe(REPO / "images" / "debian-12-vagrant.yaml")
    parent = load_recipe(REPO / "images" / "debian-12.yaml")
    assert r.outputs == ("qcow2", "vagrant") and parent.outputs == ("qcow2",)
    assert r.packages == parent.packages
    key = next(f for f in r.files if f.path == "/etc/ssh/vagrant_insecure_key.pub")
    assert key.content.startswith("ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8")


@pytest.mark.subprocess("qemu-img")
def test_vagrant_box_holds_the_image_and_what_vagrant_libvirt_reads(tmp_path):
    import json
    import subprocess
    import tarfile

    from labbuilder.image import outputs

    disk = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "3G"], check=True)
    box = outputs.vagrant_box(disk, tmp_path / "d.box")
    with tarfile.open(box) as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        meta = json.load(tar.extractfile("metadata.json"))
        assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 3}
        assert tar.extractfile("box.img").read() == disk.read_bytes()
        assert b'libvirt.video_type = "vga"' in tar.extractfile("Vagrantfile").read()
    assert outputs.file_entry(box)["format"] == "vagrant-libvirt box"


def test_a_file_before_the_packages_changes_the_hash_and_false_does_not(tmp_path):
    text = (LAYERED / "base.yaml").read_text()
    (tmp_path / "false.yaml").write_text(text.replace("    content: base\n", "    content: base\n"
                                                                          "    before_packages: false\n", 1))
    (tmp_path / "true.yaml").write_text(text.replace("    content: base\n", "    content: base\n"
                                                                         "    before_packages: true\n", 1))
    base = load_recipe(LAYERED / "base.yaml")
    assert load_recipe(tmp_path / "false.yaml").hash() == base.hash()
    early = load_recipe(tmp_path / "true.yaml")
    assert early.hash() != base.hash()
    assert [(f.path, f.before_packages) for f in early.files] == [("/etc/motd", True), ("/etc/issue", False)]


def test_before_packages_must_be_true_or_false(tmp_path):
    text = (LAYERED / "base.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(text.replace("    content: base\n", "    content: base\n"
                                                                        "    before_packages: yes please\n", 1))
    with pytest.raises(RecipeError) as e:
        load_recipe(tmp_path / "bad.yaml")
    assert "bad.yaml:10: files.0.before_packages: must be true or false" in str(e.value)
