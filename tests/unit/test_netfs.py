"""Network filesystems are told from the mounts table: the longest mount point wins."""

from __future__ import annotations

from pathlib import Path

from tardis_common.netfs import filesystem_type, network_filesystem

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
nas:/export /mnt/nas nfs4 rw,vers=4.2 0 0
//srv/share /mnt/smb\\040share cifs rw 0 0
/dev/sdb1 /mnt/nas/local-disk ext4 rw 0 0
"""


def test_longest_mount_point_decides() -> None:
    assert network_filesystem("/mnt/nas/backups/laptop", MOUNTS) == "nfs4"
    assert network_filesystem("/mnt/nas", MOUNTS) == "nfs4"
    assert network_filesystem("/mnt/nas/local-disk/repo", MOUNTS) is None  # a local disk mounted inside
    assert network_filesystem("/mnt/nasty", MOUNTS) is None  # a prefix of the name is not a parent
    assert network_filesystem("/mnt/smb share/repo", MOUNTS) == "cifs"  # escaped space
    assert filesystem_type("/home", MOUNTS) == "ext4"


def test_this_machine_answers_for_a_local_directory(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) is not None  # /proc/self/mounts exists on Linux
    assert network_filesystem(tmp_path) is None
