"""The Vagrant box the image pipeline builds (images/debian-12-vagrant.yaml, output
`vagrant`) boots under Debian's vagrant and vagrant-libvirt, and Vagrant logs in to it.

Vagrant runs inside the session's private libvirtd's namespaces (as bench/lifecycle.py
runs it): there `qemu:///system` is that daemon's socket, and the management network
vagrant-libvirt makes, with the guest on it, is reachable."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import kept_daemon

from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]

BOX = "labbuilder/debian-12-test"
VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.box = "{box}"
  config.ssh.username = "root"
  config.ssh.insert_key = false
  config.vm.boot_timeout = 900
  config.vm.define "box"
  config.vm.provider :libvirt do |lv|
    lv.uri = "qemu:///system"
    lv.driver = "{driver}"
    lv.memory = 512
    lv.cpus = 1
    lv.default_prefix = "vgtest-"
    lv.storage_pool_name = "vgtest"
    {cpu}
  end
end
"""


def _vagrant_installed() -> bool:
    if shutil.which("vagrant") is None:
        return False
    plugins = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True, timeout=120).stdout
    return "vagrant-libvirt" in plugins


@pytest.fixture(scope="module")
def vagrant(private_libvirtd):
    """Run `vagrant ARGS` in the private libvirtd's namespaces, in a project of the test's
    own (its own VAGRANT_HOME and storage pool); all of it removed after."""
    if not _vagrant_installed():
        pytest.skip("vagrant and vagrant-libvirt are not installed (make setup installs them)")
    from labbuilder.system import accel

    root = Path(tempfile.mkdtemp(prefix="lbvagrant-"))
    project = root / "project"
    project.mkdir()
    driver = accel.detect().domain_type  # what labbuilder gives its own guests here
    cpu = 'lv.cpu_mode = "custom"; lv.cpu_model = "qemu64"' if driver == "qemu" else ""  # as labbuilder's TCG guests
    (project / "Vagrantfile").write_text(VAGRANTFILE.format(box=BOX, driver=driver, cpu=cpu))
    env = {**os.environ, "VAGRANT_HOME": str(root / "home"), "VAGRANT_CHECKPOINT_DISABLE": "1",
           "VAGRANT_CWD": str(project)}  # nsenter --mount starts in the namespace's /: name the project

    def run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        argv = ["nsenter", f"--net={private_libvirtd.netns}", f"--mount=/proc/{private_libvirtd.pid}/ns/mnt", "--",
                "vagrant", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)

    with kept_daemon(private_libvirtd, "keep-vagrant") as conn:
        virt.ensure_pool(conn, "vgtest", f"""<pool type="dir"><name>vgtest</name>
            <target><path>{root / "pool"}</path></target></pool>""")
        try:
            yield run, conn
        finally:
            run("destroy", "-f", timeout=600)
            virt.remove_pool(conn, "vgtest")
            if virt.network_info(conn, "vagrant-libvirt") is not None:
                virt.remove_network(conn, "vagrant-libvirt")
            shutil.rmtree(root, ignore_errors=True)


def test_the_vagrant_box_boots_under_vagrant_libvirt_and_vagrant_logs_in(vagrant_box, vagrant):
    """`vagrant box add` takes the built box; `vagrant up` boots it and waits for SSH (as
    root with Vagrant's insecure key); `vagrant ssh` runs a command there; `vagrant destroy`
    removes the domain."""
    run, conn = vagrant
    added = run("box", "add", "--force", "--name", BOX, str(vagrant_box.dir / "debian-12-vagrant.box"), timeout=600)
    assert added.returncode == 0, added.stdout + added.stderr
    up = run("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert virt.domain_state(conn, "vgtest-box") == "running"
    login = run("ssh", "-c", "id -un; . /etc/os-release; echo $ID $VERSION_ID", timeout=300)
    assert login.returncode == 0, login.stdout + login.stderr
    assert login.stdout.split() == ["root", "debian", "12"], login.stdout
    down = run("destroy", "-f", timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    assert virt.domain_state(conn, "vgtest-box") == "absent"
