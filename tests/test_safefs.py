import errno
import os
from pathlib import Path

import pytest

from flowersort.safefs import copies, identity, privacy, seams, transfer
from flowersort.safefs import names as naming
from tests.conftest import census, exfat, mounted, small_tmpfs


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def tree(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    dest.mkdir()
    (src / "a" / "IMG_0001.jpg").write_bytes(b"first photo")
    (src / "b" / "IMG_0001.jpg").write_bytes(b"second photo")
    return src, dest


def test_move_same_filesystem(tree):
    src, dest = tree
    before = census(src, dest)
    final = transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    assert final == dest / "IMG_0001.jpg" and final.read_bytes() == b"first photo"
    assert census(src, dest) == before


def test_name_clash_gets_a_new_name_never_overwrites(tree):
    src, dest = tree
    before = census(src, dest)
    transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    second = transfer.move_file(src / "b" / "IMG_0001.jpg", dest)
    assert second.name == "IMG_0001 (1).jpg"
    assert files(dest) == ["IMG_0001 (1).jpg", "IMG_0001.jpg"]
    assert census(src, dest) == before


def test_candidate_names():
    names = (s + ".jpg" for s in naming.numbered_stems(naming.split_name("IMG.0001.jpg")[0]))
    assert [next(names) for _ in range(3)] == [
        "IMG.0001.jpg",
        "IMG.0001 (1).jpg",
        "IMG.0001 (2).jpg",
    ]
    names = naming.numbered_stems(naming.split_name(".hidden")[0])
    assert [next(names) for _ in range(2)] == [".hidden", ".hidden (1)"]


def test_across_filesystems_copies_verifies_then_removes(tree, monkeypatch):
    src, dest = tree
    before = census(src, dest)
    monkeypatch.setattr(seams, "link", link_exdev_for_sources)
    final = transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    assert final.read_bytes() == b"first photo"
    assert not (src / "a" / "IMG_0001.jpg").exists()
    assert files(dest) == ["IMG_0001.jpg"]  # no temporary left behind
    assert census(src, dest) == before


@pytest.mark.parametrize("where", ["copy_bytes", "fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_failed_copy_leaves_source_and_no_temporary(tree, monkeypatch, where, code):
    src, dest = tree
    before = census(src, dest)

    def fails(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(seams, "link", link_exdev_for_sources)
    monkeypatch.setattr(seams, where, fails)
    with pytest.raises(OSError) as info:
        transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    assert info.value.errno == code
    assert files(dest) == []
    assert census(src, dest) == before


def link_exdev_for_sources(a, b):
    """Hard links from the archive fail as they would across filesystems."""
    if "src" in str(a):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    os.link(a, b)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EIO, errno.ENOSPC, errno.EACCES])
def test_failed_link_into_the_target_leaves_everything(tree, monkeypatch, code):
    """The final name cannot be taken: a read-only or full target, an I/O error."""
    src, dest = tree
    before = census(src, dest)

    def fails(a, b):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(seams, "link", fails)
    with pytest.raises(OSError):
        transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    assert files(dest) == [] and census(src, dest) == before


def test_failed_unlink_of_source_undoes_the_copy(tree, monkeypatch):
    src, dest = tree
    before = census(src, dest)
    real_unlink = seams.remove

    def unlink(path):
        if "src" in str(path):
            raise OSError(errno.EACCES, "Permission denied")
        real_unlink(path)

    monkeypatch.setattr(seams, "remove", unlink)
    with pytest.raises(OSError):
        transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    assert files(dest) == []
    assert census(src, dest) == before


def test_copy_file_keeps_the_source(tree):
    src, dest = tree
    final = transfer.copy_file(src / "a" / "IMG_0001.jpg", dest)
    assert final.read_bytes() == (src / "a" / "IMG_0001.jpg").read_bytes()
    assert files(dest) == ["IMG_0001.jpg"]


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
@pytest.mark.parametrize("change", ["append", "replace", "delete"])
def test_a_source_that_changes_before_its_removal_is_kept(tree, monkeypatch, across, change):
    """A photo still being written (appended to) or replaced after it was copied: the
    source stays, with every byte, and no copy is left at the target."""
    src, dest = tree
    photo = src / "a" / "IMG_0001.jpg"
    real_fsync_dir = seams.fsync_dir

    def writer_at_work(folder):  # runs after the final name is taken, before the unlink
        if folder == dest:
            if change == "append":
                with open(photo, "ab") as f:
                    f.write(b" and more bytes")
            elif change == "delete":
                photo.unlink()
            else:
                (src / "a" / "new").write_bytes(b"another photo")
                os.replace(src / "a" / "new", photo)
        real_fsync_dir(folder)

    if across:
        monkeypatch.setattr(seams, "link", link_exdev_for_sources)
    monkeypatch.setattr(seams, "fsync_dir", writer_at_work)
    if change == "append" and not across:  # a hard link: the writer writes into the final
        assert transfer.move_file(photo, dest).read_bytes() == b"first photo and more bytes"
        assert not photo.exists()
        return
    if change == "delete":  # the copy is the only one left: it stays
        with pytest.raises(OSError, match="vanished while being moved"):
            transfer.move_file(photo, dest)
        assert [p.read_bytes() for p in dest.iterdir()] == [b"first photo"]
        return
    with pytest.raises(identity.Changed, match="changed while being moved"):
        transfer.move_file(photo, dest)
    expected = b"first photo and more bytes" if change == "append" else b"another photo"
    assert photo.read_bytes() == expected
    assert files(dest) == []


def test_across_filesystems_keeps_mode_owner_times_and_xattrs(tmp_path):
    """A real second filesystem (a tmpfs): what `mv` keeps, a move keeps."""
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"a private photo")
    photo.chmod(0o600)
    os.setxattr(photo, "user.xdg.tags", b"flowers,garden")
    os.setxattr(photo, "user.comment", b"grandmother's roses")
    os.chown(photo, 1234, 2345)
    os.utime(photo, ns=(1_000_000_123_456_789, 999_999_999_987_654_321))
    with small_tmpfs(tmp_path / "other", "4m") as other:
        final = transfer.move_file(photo, other)
        st = final.stat()
        assert not photo.exists() and final.read_bytes() == b"a private photo"
        assert oct(st.st_mode & 0o7777) == oct(0o600)
        assert (st.st_uid, st.st_gid) == (1234, 2345)
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123_456_789, 999_999_999_987_654_321)
        assert os.getxattr(final, "user.xdg.tags") == b"flowers,garden"
        assert os.getxattr(final, "user.comment") == b"grandmother's roses"


@pytest.mark.parametrize("member", [0, 1], ids=["photo", "sidecar"])
def test_a_write_while_the_removal_is_journaled_keeps_the_group(tmp_path, member):
    """Across filesystems, a sync client appends to a file of the group while the journal
    commits "unlink" (after the last compare with the copies): the group stays whole in
    the archive, every byte kept, and no copy is left at the target."""
    from tests.test_kill import other_filesystem

    if other_filesystem() is None:
        pytest.skip("no second filesystem (tmpfs) to move across")
    import shutil
    import tempfile
    from pathlib import Path

    src = tmp_path / "src"
    src.mkdir()
    group = [src / "IMG_0001.jpg", src / "IMG_0001.xmp"]
    group[0].write_bytes(b"a photo")
    group[1].write_bytes(b"<xmp/>")
    dest = Path(tempfile.mkdtemp(dir=other_filesystem()))
    steps = []

    def note(step, path, **details):  # the journal's hook: the writer strikes meanwhile
        steps.append(step)
        if step == "unlink" and path == group[member]:
            with open(group[member], "ab") as f:
                f.write(b" and more")

    try:
        with pytest.raises(identity.Changed, match="changed while being moved"):
            transfer.transfer(group, dest, note=note)
        assert group[member].read_bytes().endswith(b" and more")
        assert files(src) == ["IMG_0001.jpg", "IMG_0001.xmp"] and files(dest) == []
        assert "rollback" in steps
    finally:
        shutil.rmtree(dest)


def test_a_write_while_a_dedupe_is_journaled_keeps_the_source(tmp_path):
    """--on-conflict dedupe removes a photo whose twin sits in the target; a write to it
    while the journal commits "unlink" makes it another photo: it stays, with its bytes."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    sources = [src / "IMG_0001.jpg", src / "IMG_0001.xmp"]
    twins = [dest / "IMG_0001.jpg", dest / "IMG_0001.xmp"]
    for s, t, data in zip(sources, twins, [b"a photo", b"<xmp/>"]):
        s.write_bytes(data)
        t.write_bytes(data)

    def note(step, path, **details):  # the journal's hook: the writer strikes meanwhile
        if step == "unlink" and path == sources[1]:
            with open(sources[1], "ab") as f:
                f.write(b"<rating>5</rating>")

    with pytest.raises(OSError, match="no longer a copy"):
        transfer.remove_duplicates(sources, twins, note)
    assert sources[0].read_bytes() == b"a photo"  # put back from its twin
    assert sources[1].read_bytes() == b"<xmp/><rating>5</rating>"
    assert [t.read_bytes() for t in twins] == [b"a photo", b"<xmp/>"]


def test_a_dedupe_rolled_back_puts_a_photo_back_on_exfat_from_a_private_twin(tmp_path):
    """A removed duplicate is put back where it was (0777 on exFAT, as it was there before)
    even when its twin is private: refusing it would leave the group split."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with exfat(tmp_path / "stick") as src:
        sources = [src / "IMG_0001.jpg", src / "IMG_0001.xmp"]
        twins = [dest / "IMG_0001.jpg", dest / "IMG_0001.xmp"]
        for s, t, data in zip(sources, twins, [b"a photo", b"<xmp/>"]):
            s.write_bytes(data)
            t.write_bytes(data)
            t.chmod(0o600)

        def note(step, path, **details):  # a writer changes the .xmp: the dedupe rolls back
            if step == "unlink" and path == sources[1]:
                with open(sources[1], "ab") as f:
                    f.write(b"<rating>5</rating>")

        with pytest.raises(OSError, match="no longer a copy"):
            transfer.remove_duplicates(sources, twins, note)
        assert sources[0].read_bytes() == b"a photo"  # put back from its private twin
        assert sorted(p.name for p in src.iterdir()) == ["IMG_0001.jpg", "IMG_0001.xmp"]


@pytest.mark.parametrize("across", [False, True], ids=["same-fs", "across-fs"])
def test_an_io_error_syncing_the_target_folder_leaves_nothing_there(tree, monkeypatch, across):
    """fsync of the target folder fails (EIO, seen with strace's fault injection) once
    the final names are taken: the move fails with the sources intact and no twin in the
    target (before, the photo stayed in both places until the next run's recovery)."""
    src, dest = tree
    real_fsync_dir = seams.fsync_dir

    def failing(folder):
        if folder == dest:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync_dir(folder)

    if across:
        monkeypatch.setattr(seams, "link", link_exdev_for_sources)
    monkeypatch.setattr(seams, "fsync_dir", failing)
    before = census(src)
    with pytest.raises(OSError, match="Input/output error"):
        transfer.move_file(src / "a" / "IMG_0001.jpg", dest)
    assert census(src) == before and files(dest) == []


def test_a_user_copying_a_private_photo_to_a_stick_of_roots_is_told_it_would_be_exposed(
    tmp_path,
):
    """exFAT mounted by root shows every file root's and 0777: a user may write there but
    not set a file's owner, mode or times. Their private photo is refused as exposed
    (the reason), not with the bare EPERM of setting its times, and nothing is left."""
    (tmp_path / "src").mkdir()
    photo = tmp_path / "src" / "IMG_0001.jpg"
    photo.write_bytes(b"a private photo")
    photo.chmod(0o600)
    for path in (tmp_path / "src", photo):
        os.chown(path, 4321, 4321)
    tmp_path.chmod(0o755)  # the user starts here: its parents are root's 0700
    with exfat(tmp_path / "stick") as stick:
        (stick / "Flowers").mkdir()
        here = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        pid = os.fork()
        if pid == 0:
            try:
                os.fchdir(here)
                os.setgroups([])
                os.setgid(4321)
                os.setuid(4321)
                copies.copy_verified(Path("src/IMG_0001.jpg"), Path("stick/Flowers"))
                os._exit(2)
            except privacy.Exposed as e:
                os._exit(0 if "readable by everyone" in str(e) else 3)
            except BaseException:
                os._exit(1)
        os.close(here)
        assert os.waitpid(pid, 0)[1] >> 8 == 0
        assert not os.listdir(stick / "Flowers") and photo.read_bytes() == b"a private photo"


def test_a_photo_shared_by_its_acl_is_not_given_to_its_group_on_a_disk_without_acls(tmp_path):
    """A 0600 photo whose ACL lets one user read it shows 0640 (the group bits are the
    ACL's mask): ramfs keeps modes but no ACL, so its copy there would be readable by the
    photo's group, which could not read it. It is refused, and nothing is left."""
    import struct

    def acl(*entries):  # the kernel's xattr form of a POSIX ACL: tag, permissions, id
        return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)

    anyone = 0xFFFFFFFF
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"a photo shared with one user")
    os.chown(photo, 0, 4002)
    photo.chmod(0o600)
    try:  # owner rw, user 4321 r, owning group none, mask r, others none
        access = acl((1, 6, anyone), (2, 4, 4321), (4, 0, anyone), (16, 4, anyone), (32, 0, anyone))
        os.setxattr(photo, "system.posix_acl_access", access)
    except OSError as e:
        pytest.skip(f"no POSIX ACLs here: {e.strerror}")
    assert photo.stat().st_mode & 0o777 == 0o640
    with mounted(tmp_path / "ram", "mount", "-t", "ramfs", "ramfs") as ram:
        with pytest.raises(privacy.Exposed, match="readable by group 4002"):
            copies.copy_verified(photo, ram)
        assert not os.listdir(ram)


@pytest.mark.parametrize("mode,who", [(0o644, "everyone"), (0o640, "group")])
def test_a_photo_private_by_its_folder_is_not_moved_where_others_can_read_it(tmp_path, mode, who):
    """A 0644 photo in a 0700 folder is the owner's alone; moved into a folder everyone
    can open, anyone could read it. It stays, and nothing is left in the target."""
    import shutil
    import tempfile

    closed = tmp_path / "private"
    closed.mkdir(mode=0o700)
    photo = closed / "IMG_0001.jpg"
    photo.write_bytes(b"photo")
    photo.chmod(mode)
    sidecar = closed / "IMG_0001.xmp"
    sidecar.write_bytes(b"xmp")
    sidecar.chmod(0o600)
    open_folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        open_folder.chmod(0o755)  # and /tmp lets everyone in
        with pytest.raises(privacy.Exposed, match=f"would let {who}.* read IMG_0001.jpg"):
            transfer.transfer([sidecar, photo], open_folder)
        assert photo.read_bytes() == b"photo" and sidecar.exists()
        assert list(open_folder.iterdir()) == []
    finally:
        shutil.rmtree(open_folder)
    # into a folder as closed as its own, it moves
    inner = closed / "Flowers"
    inner.mkdir()
    assert transfer.move_file(photo, inner).read_bytes() == b"photo"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give folders to another user")
def test_a_root_run_does_not_move_a_private_photo_into_another_users_home():
    """A root run (cron) from alice's closed home into bob's closed home: everyone and the
    groups stay out of both, but bob, who owns the folders on the way, could read it there."""
    import shutil
    import subprocess
    import tempfile

    alice, bob = 4101, 4102  # uids without a name: in no group
    homes = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp lets everyone in
    try:
        homes.chmod(0o755)
        closed = homes / "alice"
        closed.mkdir(mode=0o700)
        photo = closed / "IMG_0001.jpg"
        photo.write_bytes(b"photo")
        photo.chmod(0o644)
        for path in (closed, photo):
            os.chown(path, alice, alice)
        flowers = homes / "bob" / "Flowers"
        flowers.mkdir(parents=True)
        for folder in (flowers.parent, flowers):
            folder.chmod(0o700)
            os.chown(folder, bob, bob)

        def bob_reads(path):
            cmd = ["setpriv", f"--reuid={bob}", f"--regid={bob}", "--clear-groups", "cat", path]
            return subprocess.run(cmd, capture_output=True).returncode == 0

        if shutil.which("setpriv"):  # what the check stands for, seen by bob himself
            assert not bob_reads(photo)
            shutil.copy(photo, flowers / "probe")
            assert bob_reads(flowers / "probe")
            (flowers / "probe").unlink()
        with pytest.raises(privacy.Exposed, match="would let user 4102 read IMG_0001.jpg"):
            transfer.transfer([photo], flowers)
        assert photo.read_bytes() == b"photo" and not os.listdir(flowers)
        photo.chmod(0o600)  # her own mode keeps bob out: it moves
        assert transfer.move_file(photo, flowers).read_bytes() == b"photo"
    finally:
        shutil.rmtree(homes)
