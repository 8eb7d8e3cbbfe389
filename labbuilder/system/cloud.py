"""The one module that speaks to a cloud through openstacksdk: a built image into the
Glance of any cloud named in clouds.yaml (`image upload --os-cloud`), with its manifest's
Glance fields, then checked as the lab upload is (lab/glance.verify)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import openstack
from openstack import exceptions as sdk_errors
from openstack.config import exceptions as config_errors

from labbuilder.lab.glance import Uploaded, verify
from labbuilder.model.errors import ImageError
from labbuilder.reporting import Progress

if TYPE_CHECKING:
    from labbuilder.image.cache import BuiltImage


def upload(cloud: str, built: BuiltImage, name: str, progress: Progress) -> Uploaded:
    """Upload `built` as `name` to `cloud`; verified against its manifest, deleted if not."""
    g = built.manifest["glance"]
    properties = {k: g[k] for k in ("os_distro", "os_version") if g.get(k)}
    try:
        conn = openstack.connect(cloud=cloud)
        with progress.stage(f"upload {built.image.name} to {cloud} as {name}"):
            created = conn.image.create_image(
                name=name, filename=str(built.image), disk_format=g["disk_format"],
                container_format=g["container_format"], min_disk=g["min_disk"], min_ram=g["min_ram"],
                validate_checksum=False, wait=True, **properties)
            shown = conn.image.get_image(created.id)
    except (sdk_errors.SDKException, config_errors.OpenStackConfigException) as e:
        raise ImageError(f"cloud {cloud}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    fields = {"checksum": shown.checksum, "os_hash_algo": shown.hash_algo, "os_hash_value": shown.hash_value}
    wrong = verify(built, fields)
    if wrong:
        conn.image.delete_image(shown.id, ignore_missing=True)
        raise ImageError(f"Glance of {cloud} stored image {name} differently; it was deleted again: {'; '.join(wrong)}")
    return Uploaded(shown.id, name, f"cloud {cloud}", shown.checksum, shown.hash_algo or "", shown.hash_value or "")
