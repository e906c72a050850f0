"""Roles are enforced by the job layer itself, whatever the dashboard shows."""

import pytest

import store
from engine.auth import AccessPolicy, PermissionDenied, User, hash_password, save_users
from engine.jobs import Dispatcher, LocalExecutor

HASH = hash_password("pw", n=16, r=1, p=1)


@pytest.fixture
def guarded(tmp_path):
    """A store owned by this process and a dispatcher with sign-in on (nothing is ever started)."""
    users = tmp_path / "users.toml"
    save_users(users, {n: User(n, r, HASH) for n, r in [("val", "viewer"), ("ed", "editor"), ("eve", "editor"),
                                                         ("ada", "admin")]})
    with store.open_store(tmp_path / "store") as st:
        yield st, Dispatcher(st, executor=LocalExecutor(st.path, max_workers=1),
                             access=AccessPolicy("password", users), per_user=1)


def _tables(st):
    return len(st.list_jobs()), len(st.list_zoos()), len(st.list_runs())


def test_a_viewers_direct_submission_is_refused_and_writes_nothing(guarded, tiny_sweep):
    st, disp = guarded
    before = _tables(st)
    with pytest.raises(PermissionDenied, match="user 'val' may not launch jobs: that needs the role 'editor'"):
        disp.submit("warm_umap", {}, owner="val")
    with pytest.raises(PermissionDenied, match="'val'"):
        disp.submit_sweep(tiny_sweep(), owner="val")
    with pytest.raises(PermissionDenied, match="'stranger' has no account"):
        disp.submit("warm_umap", {}, owner="stranger")
    assert _tables(st) == before


def test_an_editor_submits_and_the_job_records_its_owner(guarded, tiny_sweep):
    st, disp = guarded
    zoo_id, job_id = disp.submit_sweep(tiny_sweep(), owner="ed")
    assert st.get_job(job_id)["owner"] == "ed"
    assert set(st.list_runs(zoo_id)["owner"]) == {"ed"} and st.get_zoo(zoo_id)["owner"] == "ed"


def test_cancel_own_jobs_as_editor_anyones_as_admin(guarded):
    st, disp = guarded
    mine = disp.submit("warm_umap", {}, owner="ed")
    theirs = disp.submit("warm_umap", {}, owner="eve")
    with pytest.raises(PermissionDenied, match="may not cancel other users' jobs: that needs the role 'admin'"):
        disp.cancel(theirs, user="ed")
    with pytest.raises(PermissionDenied):
        disp.cancel(mine, user="val")
    with pytest.raises(PermissionDenied, match="anonymous"):
        disp.cancel(mine)
    assert st.get_job(theirs)["status"] == "queued"
    disp.cancel(mine, user="ed")
    disp.cancel(theirs, user="ada")
    assert {st.get_job(j)["status"] for j in (mine, theirs)} == {"cancelled"}


def test_requests_from_the_cli_are_checked_against_the_owner_they_name(guarded, tiny_sweep):
    st, disp = guarded
    payload = {"sweep": tiny_sweep().model_dump(mode="json")}
    store.drop_request(st.path, "train_sweep", {**payload, "owner": "val"})
    store.drop_request(st.path, "train_sweep", {**payload, "owner": "ed"})
    disp._take_requests()
    assert st.list_jobs()["owner"].tolist() == ["ed"]


def test_without_a_policy_everyone_may(tmp_path):
    with store.open_store(tmp_path / "store") as st:
        disp = Dispatcher(st, executor=LocalExecutor(st.path, max_workers=1))
        job = disp.submit("warm_umap", {}, owner="anyone")
        disp.cancel(job)
        assert st.get_job(job)["status"] == "cancelled"


def test_a_viewer_may_not_compute_a_probe_here_either(guarded):
    from engine.jobs import ProbeService

    st, disp = guarded
    before = (len(st.list_probes()), _tables(st))
    with pytest.raises(PermissionDenied, match="user 'val' may not launch jobs"):
        ProbeService(disp).compute_here("evaluate", {}, ["no-such-checkpoint"], owner="val")
    assert (len(st.list_probes()), _tables(st)) == before
