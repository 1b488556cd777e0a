"""Issue 32: a root run acts with the rights of whoever owns the tree (or is refused). The
users are real (useradd, as ../shared/probes/common.sh makes them), the folders live under
/tmp where they can reach them, and the state folder stays root's (tmp_path)."""

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from flowersort.sorting import checks
from tests.conftest import make_photo, run, write_photo

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
OWNER, OTHER = "probeowner", "probeother"


def user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("needs useradd")
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True)
        return pwd.getpwnam(name)


def give(path: Path, name: str) -> None:
    """path and everything below it to user `name`."""
    entry = user(name)
    for p in [path, *path.rglob("*")]:
        os.lchown(p, entry.pw_uid, entry.pw_gid)


@pytest.fixture
def home():
    """A home of the owner's, in a folder every user can reach, with one flower photo (and
    its sidecar) in ~/Pictures/album; removed afterwards."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="flowersort-run-as-"))
    base.chmod(0o755)
    owner_home = base / "owner"
    photo = owner_home / "Pictures" / "album" / "daemon.jpg"
    write_photo(photo, make_photo(np.random.default_rng(3), True))
    photo.with_suffix(".json").write_text('{"x": 1}')
    for p in [owner_home, *owner_home.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o640)
    give(owner_home, OWNER)
    try:
        yield owner_home
    finally:
        shutil.rmtree(base)


def classify(src, dest, *extra):
    return run("classify", src, "--move-to", dest, "--threshold", 0, "--workers", 1, *extra)


def test_a_planted_link_to_a_root_only_folder_is_refused_by_the_kernel(home, monkeypatch):
    """Not only flowersort's own link check: with it gone, the owner's rights keep the run
    out of a folder of root's."""
    rootonly = home.parent / "rootonly"
    rootonly.mkdir(mode=0o755)
    (home / "Pictures" / "Flowers").symlink_to(rootonly)
    give(home / "Pictures" / "Flowers", OWNER)
    monkeypatch.setattr(checks, "check_no_foreign_links", lambda folder: None)
    result = classify(home / "Pictures", home / "Pictures" / "Flowers")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot write into the target {home / 'Pictures' / 'Flowers'}: Permission "
        f"denied (a root run acts as {OWNER}, who owns the folders it sorts; --run-as root "
        "keeps root's rights)\n"
    )
    assert list(rootonly.iterdir()) == []
    assert (home / "Pictures" / "album" / "daemon.jpg").exists()


def test_another_users_private_photo_is_not_read_even_with_follow_symlinks(home):
    other_home = home.parent / "other"
    secret = other_home / "private.jpg"
    write_photo(secret, make_photo(np.random.default_rng(4), True))
    secret.chmod(0o600)
    other_home.chmod(0o755)
    give(other_home, OTHER)
    link = home / "Pictures" / "album" / "zz.jpg"
    link.symlink_to(secret)
    give(link, OWNER)
    dest = home / "Flowers"
    args = ["--threshold", 0, "--workers", 1, "--follow-symlinks", "--copy-to", dest]
    result = run("classify", home / "Pictures", *args)
    assert "Permission denied" in result.stderr and "zz.jpg" in result.stderr
    assert secret.read_bytes() not in [p.read_bytes() for p in dest.iterdir()]
    assert sorted(p.name for p in dest.iterdir()) == ["daemon.jpg", "daemon.json"]


def test_a_root_run_over_root_s_tree_into_a_users_folder_is_refused(home, tmp_path):
    archive = home.parent / "rootsphotos"
    write_photo(archive / "IMG_1.jpg", make_photo(np.random.default_rng(5), True))
    archive.chmod(0o755)
    log_file = home / "flowersort.log"
    dest = home / "Flowers"
    result = classify(archive, dest, "--log-file", log_file)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {dest}: user {OWNER} can change {home}, so a root run will not write there "
        f"with root's rights; --run-as {OWNER} acts as that user, --run-as root keeps root's "
        "rights knowingly\n"
    )
    assert not dest.exists() and not log_file.exists()  # nothing written, not even the log
    assert (archive / "IMG_1.jpg").exists() and not (tmp_path / "state").exists()


def test_src_and_target_of_two_users_are_refused_unless_run_as_says(home):
    other_home = home.parent / "other"
    (other_home / "Flowers").mkdir(parents=True)
    other_home.chmod(0o755)
    give(other_home, OTHER)
    dest = other_home / "Flowers"
    result = classify(home / "Pictures", dest)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {dest} belongs to user {OTHER} and {home / 'Pictures'} to user {OWNER}: a "
        f"root run acts as one of them; say which with --run-as {OWNER} or --run-as {OTHER} "
        "(or --run-as root to keep root's rights knowingly)\n"
    )
    assert list(dest.iterdir()) == []
    result = classify(home / "Pictures", dest, "--run-as", OWNER)  # the kernel says no
    assert result.exit_code == 2 and "Permission denied" in result.stderr
    assert list(dest.iterdir()) == []


def test_run_as_root_keeps_roots_rights(home):
    """As before: the link checks only. The target is root's, made by root."""
    dest = home.parent / "Flowers"
    photo = home / "Pictures" / "album" / "daemon.jpg"
    before = os.stat(photo)
    result = classify(home / "Pictures", dest, "--run-as", "root")
    assert result.exit_code == 0, result.output
    assert os.stat(dest).st_uid == 0
    moved = os.stat(dest / "daemon.jpg")
    assert (moved.st_uid, moved.st_gid, moved.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    )
    assert run("classify", "--run-as", "nobody-at-all", home).stderr == (
        "Error: --run-as nobody-at-all: no such user\n"
    )


def test_acting_as_the_owner_keeps_owner_and_mode_and_undo_puts_back(home):
    """Into a new target on another filesystem (a copy, then the source removed) in a
    folder only root can change: made by root, given to the owner; the copy keeps the
    photo's owner and mode; the log file in the owner's folder is theirs; root's undo acts
    as the owner too and puts everything back."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(home).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    outside = Path(tempfile.mkdtemp(dir=shm, prefix="flowersort-run-as-"))
    try:
        outside.chmod(0o755)
        dest = outside / "Flowers"
        photo = home / "Pictures" / "album" / "daemon.jpg"
        before = os.stat(photo)
        log_file = home / ".cache" / "flowersort.log"
        result = classify(home / "Pictures", dest, "--log-file", log_file)
        assert result.exit_code == 0, result.output
        owner = user(OWNER)
        assert (os.stat(dest).st_uid, os.stat(dest).st_gid) == (owner.pw_uid, owner.pw_gid)
        moved = os.stat(dest / "daemon.jpg")
        assert (moved.st_uid, moved.st_gid, stat.S_IMODE(moved.st_mode)) == (
            before.st_uid,
            before.st_gid,
            0o640,
        )
        assert os.stat(log_file).st_uid == owner.pw_uid
        assert not photo.exists()
        result = run("undo")
        assert result.exit_code == 0, result.output
        back = os.stat(photo)
        assert (back.st_uid, back.st_gid, stat.S_IMODE(back.st_mode)) == (
            before.st_uid,
            before.st_gid,
            0o640,
        )
        assert not dest.exists()  # made by the run: removed again, as it came
    finally:
        shutil.rmtree(outside)


def test_a_tag_run_writes_sidecars_with_the_owners_rights(home):
    """A folder its owner made read-only gets no sidecar from root's run: the kernel asks
    with the owner's rights (root's would write it anyway); the writable one gets its own."""
    album = home / "Pictures" / "album"
    shut = home / "Pictures" / "shut"
    shut.mkdir()
    write_photo(shut / "IMG_2.jpg", make_photo(np.random.default_rng(6), True))
    give(shut, OWNER)
    shut.chmod(0o555)
    result = run("classify", home / "Pictures", "--tag", "Flowers", "--threshold", 0)
    assert result.exit_code == 1 and "Permission denied" in result.output
    assert [p.name for p in shut.iterdir()] == ["IMG_2.jpg"]
    [sidecar] = album.glob("*.xmp")
    assert os.stat(sidecar).st_uid == user(OWNER).pw_uid
    assert run("undo").exit_code == 0 and not list(album.glob("*.xmp"))


def test_a_worker_becomes_the_user_for_good_and_the_main_process_root_again():
    from flowersort.base import rights
    from flowersort.scoring.pipeline import kill_pool, worker_pool

    owner = rights.user_named(OWNER)
    with rights.acting(owner):
        assert (os.geteuid(), os.getegid()) == (owner.uid, owner.gid)
        pool = worker_pool(1)
        try:
            ids = pool.submit(os.getresuid).result(), pool.submit(os.getresgid).result()
        finally:
            kill_pool(pool)
        with rights.as_root(), rights.as_root():
            assert os.geteuid() == 0
        assert os.geteuid() == owner.uid
    assert ids == ((owner.uid,) * 3, (owner.gid,) * 3)
    assert (os.geteuid(), os.getegid()) == (0, 0)


def test_a_module_imported_late_while_acting_is_read_with_roots_rights():
    """Python's own files may be root's alone (/root/.pyenv): a lazy import still works."""
    import sys

    from flowersort.base import rights

    stdlib = Path(os.__file__).parent
    owner = rights.user_named(OWNER)
    readable = subprocess.run(["setpriv", f"--reuid={owner.uid}", "--clear-groups", "ls", stdlib])
    if readable.returncode == 0:
        pytest.skip("Python's own files are readable by every user here")
    sys.modules.pop("mailbox", None)
    with rights.acting(owner):
        import mailbox  # noqa: F401
    assert "mailbox" in sys.modules


def test_an_error_before_the_run_knows_whose_rights_leaves_a_users_log_file_alone(home):
    """SRC missing: click stops the command before it knows whom to act as; root does not
    create the log file in the owner's folder (cron mails the line)."""
    log_file = home / "flowersort.log"
    result = run("classify", home / "missing", "--log-file", log_file)
    assert result.exit_code == 2 and "missing" in result.stderr
    assert not log_file.exists()
