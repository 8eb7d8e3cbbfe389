# Fresh Debian 12 machine → everything labbuilder needs, then the lab or the tests.
VENV    := .venv
PY      := $(VENV)/bin/python
APT_PKGS := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients \
            libguestfs-tools python3-guestfs python3-libvirt python3-venv dnsmasq-base \
            mmdebstrap iptables libxml2-utils openssh-client util-linux iproute2 apt-cacher-ng \
            chromium vagrant vagrant-libvirt libvirt-daemon-driver-xen

.PHONY: setup compile lab test unit lint bench acceptance clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	# --system-site-packages: libguestfs's and libvirt's Python bindings come from Debian.
	[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Bytecode as an installed package has it: with PYTHONDONTWRITEBYTECODE set (as on the CI
# machines) an editable install would otherwise compile labbuilder on every command.
compile: setup
	$(PY) -m compileall -q labbuilder

lab: setup compile
	$(VENV)/bin/labbuilder image build images/debian-12.yaml
	$(VENV)/bin/labbuilder up topologies/demo.yaml

# Unit tests in random order (pytest-randomly); the tests that boot QEMU, need an image or a
# private libvirtd in file order (those that need no image first: tests/conftest.py),
# sharing booted labs (markers: pyproject.toml).
test: setup compile lint
	$(VENV)/bin/pytest -ra -m 'not vm and not image and not libvirtd'
	$(VENV)/bin/pytest -ra --durations=25 -p no:randomly -m '(vm or image or libvirtd) and not cloud'

lint: setup
	$(VENV)/bin/ruff check .

unit: setup
	$(VENV)/bin/pytest -ra -m 'not vm and not image and not libvirtd'

bench: setup compile
	$(PY) bench/image_build.py
	$(PY) bench/lifecycle.py
	$(PY) bench/checkpoint.py
	$(PY) bench/class.py

# OpenStack on guests beyond CI's share of it: every test of gridka-cloud (keystone and glance
# on one node; CI runs its `up --check` and an image upload, not the tests marked `cloud`),
# then the 8-node GridKa course for one team (bench/acceptance.py), about
# 2.5 hours on 2 TCG cores. The other course labs too:
# make acceptance ACCEPTANCE_LABS="gridka diablo-aio rdo-course"
ACCEPTANCE_LABS ?= gridka
acceptance: setup compile
	$(VENV)/bin/pytest -ra --durations=25 -p no:randomly tests/test_cloud_vm.py
	for lab in $(ACCEPTANCE_LABS); do $(PY) bench/acceptance.py --lab $$lab || exit 1; done

clean:
	rm -rf $(VENV)
