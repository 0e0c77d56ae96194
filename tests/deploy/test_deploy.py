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
    # until the product never sets a sleep time on the cpu-basic Space (--sleep-time belongs to the
    # paid hardware the worker requests): the Hub refuses it with 400.
    emulator.set_rules(fixed_cpu_basic_sleep=False)
    code, out, err = deploy("--callback", "train:train", "--allowed-users", "alice, bob", "--sleep-time", "600")
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
                         "SCHEDULER_ALLOWED_USERS": "alice,bob"}
    assert hf_api.get_space_runtime(SPACE).sleep_time == 600
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


def test_without_a_local_token_the_secret_step_is_named_and_no_token_is_invented(deploy, hf_api, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = deploy()
    assert code == 2
    assert "deploy step 'secret' failed: no Hub token" in err
    assert not hf_api.get_space_secrets(SPACE)


def test_a_dry_run_prints_every_step_and_writes_nothing(deploy, hf_api):
    code, out, err = deploy("--dry-run", "--sleep-time", "300")
    assert code == 0, err
    for step in ("queue", "space", "code", "secret", "webhook", "variables", "sleep-time"):
        assert f"] {step}: " in out
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
