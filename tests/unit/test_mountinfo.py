"""The mount table: every path at which an object shows, bind mounts included (pure parts)."""

from bvisor.backends.linux import mountinfo

TABLE = mountinfo.parse(
    "\n".join(
        [
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
            "40 22 8:1 /root/.local/share /mnt/alias rw - ext4 /dev/sda1 rw",
            "41 22 8:1 /root/.local/share/bvisor/store /srv/store rw - ext4 /dev/sda1 rw",
            "42 22 8:1 /home /srv/with\\040space rw - ext4 /dev/sda1 rw",
            "43 22 0:5 / /tmp rw - tmpfs tmpfs rw",
        ]
    )
)


def shown(fs_path: str, device: str = "8:1") -> list:
    return mountinfo.places(TABLE, device, fs_path)


def test_a_directory_shows_at_its_path_at_each_bind_above_it_and_at_each_bind_of_a_part_of_it():
    assert shown("/root/.local/share/bvisor") == ["/root/.local/share/bvisor", "/mnt/alias/bvisor", "/srv/store"]


def test_a_path_elsewhere_on_the_filesystem_shows_only_where_a_mount_covers_it():
    assert shown("/home/u") == ["/home/u", "/srv/with space/u"]
    assert shown("/x", device="0:5") == ["/tmp/x"]


def test_beneath_compares_whole_components():
    assert mountinfo.beneath("/a/b", "/a") and mountinfo.beneath("/a", "/a") and mountinfo.beneath("/a", "/")
    assert not mountinfo.beneath("/ab", "/a")


def test_the_lookups_of_a_path_follow_its_symlinks_and_name_each_directory_and_entry(tmp_path):
    from bvisor.evidence.home import lookups

    real = tmp_path / "real"
    (real / "store").mkdir(parents=True)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "evidence").symlink_to("../real")
    base = str(tmp_path)
    walked = lookups(f"{base}/proj/evidence/store/missing")
    assert walked[-4:] == [(f"{base}/proj", "evidence"), (base, "real"), (f"{base}/real", "store"), (f"{base}/real/store", "missing")]
    assert walked[0] == ("/", base.split("/")[1])
