"""`space-scheduler deploy` against the emulator: fresh, repeated, interrupted and dry runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.cli import main
from scheduler.queue import TaskQueue
from scheduler.tasks import Task

from ..conftest import TEST_TOKEN

SPACE = "demo/scheduler"
QUEUE = "demo/queue"


@pytest.fixture
def app_dir(tmp_path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "app.py").write_text("print('scheduler app')\n")
    (folder / "train.py").write_text("def train(task, ctx):\n    return {}\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0bytecode")
    return folder


@pytest.fixture
def deploy(emulator, app_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)

    def run(*extra: str) -> tuple[int, str, str]:
        code = main(["deploy", SPACE, "--queue", QUEUE, "--endpoint", emulator.url, "--app-dir", str(app_dir),
                     *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def tasks_csv(hf_api) -> bytes:
    path = hf_api.hf_hub_download(QUEUE, "tasks.csv", repo_type="dataset", force_download=True)
    return Path(path).read_bytes()


def test_a_fresh_deploy_creates_a_private_queue_and_a_private_space_with_code_secret_and_variables(deploy, hf_api,
                                                                                                 emulator):
    code, out, err = deploy("--callback", "train:train", "--allowed-users", "alice, bob", "--sleep-time", "600",
                            "--private")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"{hf_api.endpoint}/spaces/{SPACE}"
    assert hf_api.dataset_info(QUEUE).private
    assert b"id,status,model_id" in tasks_csv(hf_api)
    info = hf_api.space_info(SPACE)
    assert info.private and info.sdk == "gradio"
    files = set(hf_api.list_repo_files(SPACE, repo_type="space"))
    assert {"app.py", "train.py", "README.md", "requirements.txt", "scheduler/queue.py", "scheduler/deploy.py"} <= files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert set(hf_api.get_space_secrets(SPACE)) == {"HF_TOKEN", "WEBHOOK_SECRET"}
    variables = {k: v.value for k, v in hf_api.get_space_variables(SPACE).items()}
    assert variables == {"SCHEDULER_QUEUE": f"hf://datasets/{QUEUE}", "SCHEDULER_CALLBACK": "train:train",
                         "SCHEDULER_ALLOWED_USERS": "alice,bob", "SCHEDULER_SLEEP_TIME_S": "600"}
    # --sleep-time is the safety net of the paid hardware the worker requests: the idle cpu-basic
    # Space's own sleep time cannot be set on the Hub (400), so deploy never tries.
    assert hf_api.get_space_runtime(SPACE).sleep_time in (None, 172800)
    assert "alice, bob can reach the Space only if it is public" in out
    assert not any(f.startswith("scheduler/emulator/") for f in files)
    assert TEST_TOKEN not in out + err


def test_deploying_again_updates_code_and_settings_and_leaves_tasks_csv_byte_identical(deploy, hf_api, emulator,
                                                                                       app_dir):
    assert deploy("--callback", "train:train")[0] == 0
    queue = TaskQueue.open(f"hf://datasets/{QUEUE}", token=TEST_TOKEN, endpoint=emulator.url)
    queue.add_many([Task.new("demo/model", "demo/data", "t4-small", params={"n": i}) for i in range(3)])
    before = tasks_csv(hf_api)
    queue_head = hf_api.dataset_info(QUEUE).sha
    (app_dir / "app.py").write_text("print('scheduler app, version 2')\n")

    code, out, err = deploy("--callback", "train:other")
    assert code == 0, err
    assert tasks_csv(hf_api) == before
    assert hf_api.dataset_info(QUEUE).sha == queue_head
    assert "queue: exists, left as is" in out and "space: exists" in out
    assert "code: uploaded" in out and "set SCHEDULER_CALLBACK" in out
    app = hf_api.hf_hub_download(SPACE, "app.py", repo_type="space", force_download=True)
    assert "version 2" in Path(app).read_text()
    assert hf_api.get_space_variables(SPACE)["SCHEDULER_CALLBACK"].value == "train:other"

    space_head = hf_api.space_info(SPACE).sha
    code, out, _ = deploy("--callback", "train:other")
    assert code == 0 and "code: unchanged" in out and "variables: unchanged" in out
    assert hf_api.space_info(SPACE).sha == space_head  # nothing to push, so no rebuild


def test_a_step_that_fails_half_way_is_named_and_running_again_completes_the_deploy(deploy, hf_api, emulator):
    emulator.set_faults(error_rate=1.0, paths=r"^/api/spaces/[^/]+/[^/]+/secrets$")
    code, out, err = deploy()
    assert code == 2
    assert "deploy step 'secret' failed" in err and "done before it: queue, space, code" in err
    assert "HTTP 5" in err and TEST_TOKEN not in out + err
    assert hf_api.repo_exists(SPACE, repo_type="space") and "app.py" in hf_api.list_repo_files(SPACE, repo_type="space")
    assert not hf_api.get_space_variables(SPACE)  # the steps after the failed one did not run

    emulator.set_faults(error_rate=0.0, paths=None)
    code, out, err = deploy()
    assert code == 0, err
    assert set(hf_api.get_space_secrets(SPACE)) == {"HF_TOKEN", "WEBHOOK_SECRET"}
    assert "SCHEDULER_QUEUE" in hf_api.get_space_variables(SPACE)


def test_without_a_local_token_nothing_is_written_and_no_token_is_invented(deploy, hf_api, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = deploy()
    assert code == 2
    assert "no Hub token" in err and "hf auth login" in err
    assert not hf_api.repo_exists(SPACE, repo_type="space") and not hf_api.repo_exists(QUEUE, repo_type="dataset")


def test_a_dry_run_prints_every_step_and_writes_nothing(deploy, hf_api):
    code, out, err = deploy("--dry-run", "--sleep-time", "300")
    assert code == 0, err
    for step in ("queue", "space", "code", "secret", "webhook", "variables"):
        assert f"] {step}: " in out
    assert "SCHEDULER_SLEEP_TIME_S=300" in out
    assert "dry run" in out
    assert not hf_api.repo_exists(SPACE, repo_type="space")
    assert not hf_api.repo_exists(QUEUE, repo_type="dataset")


def test_a_space_deployed_from_a_template_is_a_duplicate_with_the_new_code_on_top(deploy, hf_api):
    hf_api.create_repo("demo/template", repo_type="space", space_sdk="gradio")
    hf_api.upload_file(path_or_fileobj=b"from the template\n", path_in_repo="NOTICE.txt", repo_id="demo/template",
                       repo_type="space")
    code, out, err = deploy("--from", "demo/template", "--public")
    assert code == 0, err
    assert "duplicated from demo/template" in out
    files = set(hf_api.list_repo_files(SPACE, repo_type="space"))
    assert {"NOTICE.txt", "app.py", "scheduler/worker.py"} <= files
    assert not hf_api.space_info(SPACE).private


def test_a_malformed_space_id_is_a_user_error_before_anything_is_written(emulator, capsys, hf_api):
    assert main(["deploy", "no-owner", "--queue", QUEUE, "--endpoint", emulator.url]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err
    assert not hf_api.repo_exists(QUEUE, repo_type="dataset")


def test_the_space_requirements_carry_the_package_and_the_train_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lines = {line.strip() for line in (root / "space_app" / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    names = {line.split("[")[0].split("=")[0].split(">")[0] for line in lines}
    wanted = project["dependencies"] + project["optional-dependencies"]["train"]
    missing = [req for req in wanted if req.split("[")[0].split("=")[0].split(">")[0] not in names]
    assert not missing, f"space_app/requirements.txt lacks {missing}"
    assert set(project["optional-dependencies"]["train"]) <= lines  # same lower bounds as the extra


def test_deploy_registers_one_webhook_on_the_queue_and_gives_its_secret_to_the_space(deploy, hf_api):
    code, out, err = deploy()
    assert code == 0, err
    hooks = hf_api.list_webhooks()
    assert len(hooks) == 1
    hook = hooks[0]
    assert hook.url == f"https://{SPACE.replace('/', '-')}.hf.space/webhooks/queue"
    assert [(w.type, w.name) for w in hook.watched] == [("dataset", QUEUE)] and hook.domains == ["repo"]
    assert hook.secret and len(hook.secret) >= 32 and not hook.disabled
    assert "WEBHOOK_SECRET" in hf_api.get_space_secrets(SPACE)
    assert hook.secret not in out + err and f"webhook: created ({hook.id})" in out

    # Again: found by its URL, the same secret (the running Space keeps a valid one), no second webhook.
    hf_api.disable_webhook(hook.id)
    code, out, err = deploy()
    assert code == 0, err
    assert [(h.id, h.secret, h.disabled) for h in hf_api.list_webhooks()] == [(hook.id, hook.secret, False)]
    assert f"webhook: exists ({hook.id}), enabled again" in out

    # A webhook someone pointed at the same URL for another repo gains the queue, keeps the rest.
    hf_api.update_webhook(hook.id, watched=[{"type": "model", "name": "demo/other"}], domains=["discussion"])
    assert deploy()[0] == 0
    again = hf_api.get_webhook(hook.id)
    assert [(w.type, w.name) for w in again.watched] == [("model", "demo/other"), ("dataset", QUEUE)]
    assert again.domains == ["discussion", "repo"] and again.secret == hook.secret


def test_no_webhook_registers_none_and_a_webhook_url_is_used_as_given(deploy, hf_api):
    assert deploy("--no-webhook")[0] == 0
    assert hf_api.list_webhooks() == [] and "WEBHOOK_SECRET" not in hf_api.get_space_secrets(SPACE)
    assert deploy("--webhook-url", "http://127.0.0.1:9/webhooks/queue")[0] == 0
    assert [h.url for h in hf_api.list_webhooks()] == ["http://127.0.0.1:9/webhooks/queue"]


# ---------------------------------------------------------------- the Hub's rules (hub-facts §11)


def test_a_free_account_gets_one_line_per_missing_prerequisite_and_nothing_is_created(emulator, app_dir, capsys,
                                                                                    hf_api, monkeypatch):
    from scheduler.emulator.accounts import FREE_TOKEN, FREE_USER

    monkeypatch.setenv("HF_TOKEN", FREE_TOKEN)
    code = main(["deploy", f"{FREE_USER}/scheduler", "--queue", f"{FREE_USER}/queue", "--endpoint", emulator.url,
                 "--app-dir", str(app_dir)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing was created" in err
    lines = [line for line in err.splitlines() if line.strip().startswith("- ")]
    assert len(lines) == 2, err  # no PRO subscription; no payment method
    assert "PRO subscription" in lines[0] and "https://huggingface.co/pro" in lines[0]
    assert "payment method" in lines[1] and "settings/billing" in lines[1]
    assert not hf_api.repo_exists(f"{FREE_USER}/queue", repo_type="dataset")
    assert not hf_api.repo_exists(f"{FREE_USER}/scheduler", repo_type="space")
    assert FREE_TOKEN not in err


def test_a_token_that_cannot_write_the_namespaces_is_refused_before_anything_is_written(deploy, hf_api, emulator,
                                                                                      capsys):
    code = main(["deploy", "someone-else/scheduler", "--queue", "another/queue", "--endpoint", emulator.url])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the Space in someone-else" in err and "cannot write the queue dataset" in err
    assert not hf_api.repo_exists("another/queue", repo_type="dataset")


def test_a_second_deploy_with_nothing_changed_writes_nothing_and_never_restarts_the_space(deploy, hf_api, emulator):
    from tests.support import wait_for

    assert deploy("--callback", "train:train")[0] == 0
    wait_for(lambda: hf_api.get_space_runtime(SPACE).stage == "RUNNING", 30, "the Space to run")
    space_head = hf_api.space_info(SPACE).sha
    queue_head = hf_api.dataset_info(QUEUE).sha
    secrets_before = {k: v.updated_at for k, v in hf_api.get_space_secrets(SPACE).items()}
    boots = emulator.hub.spaces.info(SPACE)["boots"]
    code, out, err = deploy("--callback", "train:train")
    assert code == 0, err
    assert "code: unchanged" in out and "secret: kept" in out and "variables: unchanged" in out
    assert hf_api.space_info(SPACE).sha == space_head and hf_api.dataset_info(QUEUE).sha == queue_head
    assert {k: v.updated_at for k, v in hf_api.get_space_secrets(SPACE).items()} == secrets_before
    assert emulator.hub.spaces.info(SPACE)["boots"] == boots
    assert hf_api.get_space_runtime(SPACE).stage == "RUNNING"
    code, out, _ = deploy("--callback", "train:train", "--rotate-secrets")
    assert code == 0 and "secret: set" in out


def test_a_deploy_while_the_space_runs_a_task_waits_for_it_instead_of_killing_it(deploy, hf_api, emulator,
                                                                              app_dir):
    import threading
    import time

    assert deploy()[0] == 0
    queue = TaskQueue.open(f"hf://datasets/{QUEUE}", token=TEST_TOKEN, endpoint=emulator.url)
    task = queue.add(Task.new("demo/model", "demo/data", "t4-small"))
    running = queue.claim(f"{SPACE}#100-boot", 600)  # what the Space's worker writes when it takes a task
    (app_dir / "app.py").write_text("print('scheduler app, version 2')\n")
    result: dict = {}
    deployer = threading.Thread(target=lambda: result.update(code=deploy("--callback", "train:new")))
    deployer.start()
    time.sleep(3)
    assert deployer.is_alive()  # held back: the new code would restart the Space mid-task
    assert "app.py" in hf_api.list_repo_files(SPACE, repo_type="space")
    app = Path(hf_api.hf_hub_download(SPACE, "app.py", repo_type="space", force_download=True)).read_text()
    assert "version 2" not in app
    queue.complete(task.id, running.lease_id, {"ok": True})
    deployer.join(60)
    code, out, err = result["code"]
    assert code == 0, err
    assert "waiting: the Space is running" in out and "code: uploaded" in out
