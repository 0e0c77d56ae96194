"""The scheduler's Space: a submit form, the live queue, the runtime and the costs.

The worker runs in a server-side thread started with the app (a `gr.Timer` only ticks while a
page is open); this file only wires the library (`scheduler.dashboard`, `scheduler.access`) to
Gradio components. On a Space the `scheduler` package sits next to this file (uploaded with it);
locally it is the installed one.

    python app.py [--auth user:password] [--host 127.0.0.1] [--port 7860]

Who may sign in, and on which addresses an open form may be served: scheduler/access.py
(SCHEDULER_AUTH, SCHEDULER_MOCK_LOGIN, the Space's OAUTH_* variables).

Settings: SCHEDULER_QUEUE, SCHEDULER_CALLBACK, SCHEDULER_ALLOWED_USERS, SCHEDULER_PUBLIC_QUEUE,
SCHEDULER_AUTH, SCHEDULER_WORKER (off: no worker), SCHEDULER_<SETTING> (any worker setting, e.g. SCHEDULER_POLL_S),
SPACE_ID, HF_TOKEN, HF_ENDPOINT.
"""

import argparse
import hashlib
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from scheduler import billing  # noqa: E402
from scheduler import dashboard as dash  # noqa: E402
from scheduler.access import Access  # noqa: E402
from scheduler.errors import InvalidTransition, TaskNotFound, UserError, ValidationError  # noqa: E402
from scheduler.flavors import catalog, catalog_for  # noqa: E402
from scheduler.hub import describe  # noqa: E402
from scheduler.queue import TaskQueue  # noqa: E402
from scheduler.redact import redact, register_secret  # noqa: E402
from scheduler.tasks import Task, new_task_id  # noqa: E402

APP_DIR = Path(__file__).resolve().parent
WAKE_DELAY_S = 2.0
PERIODS_TTL_S = 5.0
# Imported by load_gradio(), after the worker has started: on a Space that just booted onto a GPU,
# importing gradio takes seconds that are billed, and the worker does not need it.
gr = None


def load_gradio():
    global gr
    if gr is None:
        import gradio

        gr = gradio
    return gr
FIELD_LABELS = {"model_id": "Model id", "dataset_id": "Dataset id", "hardware": "Hardware",
                "params": "Params (JSON object)", "priority": "Priority", "max_attempts": "Max attempts",
                "timeout_s": "Timeout (s)"}
CSS = """
.field-error, .field-error * { color: #b91c1c !important; font-size: 0.95em; }
.sched-bar { background: #e5e7eb; border-radius: 6px; height: 14px; overflow: hidden; }
.sched-fill { background: #f59e0b; height: 100%; transition: width 0.5s; }
.sched-label { font-size: 0.9em; margin-top: 4px; }
/* The queue table: headers on one line (never "statu s"), data wrapped between words. */
#queue-table th, #queue-table th * { white-space: nowrap !important; word-break: keep-all !important;
  overflow-wrap: normal !important; }
#queue-table .body-cell, #queue-table .body-cell * { font-size: 12.5px; word-break: normal;
  overflow-wrap: anywhere; }
.status-label { display: inline-block; border-radius: 999px; padding: 0 0.6em; font-weight: 600;
  font-size: 0.85em; white-space: nowrap; word-break: keep-all; overflow-wrap: normal; }
.status-pending { background: #fef3c7; color: #92400e; }
.status-running { background: #dbeafe; color: #1e40af; }
.status-done { background: #dcfce7; color: #166534; }
.status-failed { background: #fee2e2; color: #991b1b; }
.status-cancelled { background: #e5e7eb; color: #374151; }
.status-stopping { background: #fde68a; color: #92400e; }
.runtime p { margin: 0.2em 0; }
.timeline-legend { font-size: 0.85em; }
.timeline-legend span { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 0.8em;
  vertical-align: middle; }
#restart-note { position: fixed; top: 0; left: 0; right: 0; z-index: 1000; padding: 0.5em 1em;
  background: #dbeafe; color: #1e3a8a; text-align: center; font-weight: 600; }
.task-detail .task-head { font-size: 1.05em; margin-bottom: 0.3em; }
.task-detail .task-sentence { margin: 0.3em 0 0.6em; }
.task-detail table.task-fields th { text-align: left; padding-right: 1em; white-space: nowrap; font-weight: 600; }
.task-detail pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 16em; overflow: auto; }
"""


# The Space restarts on every hardware switch. Gradio's page then shows a red "Connection Lost" error
# toast and reloads itself once the server answers again; a restart is expected here, so the toast
# gives way to a plain note (the reload still happens, and the page keeps its filter and selection).
HEAD = """<script>
(() => {
  const LOST = "Connection to the server was lost";
  const note = () => {
    if (document.getElementById("restart-note")) return;
    const div = document.createElement("div");
    div.id = "restart-note";
    div.textContent = "The Space is restarting (a hardware switch, usually 1-3 min); this page reconnects by itself.";
    document.body.appendChild(div);
  };
  new MutationObserver(() => {
    for (const el of document.querySelectorAll("[data-testid='toast-body'], .toast-body")) {
      if (el.textContent.includes(LOST) && el.style.display !== "none") {
        el.style.display = "none";
        note();
      }
    }
  }).observe(document.documentElement, {childList: true, subtree: true, characterData: true});
})();
</script>"""


class SchedulerApp:
    def __init__(self, settings: dash.AppSettings, access: Access):
        self.settings = settings
        self.access = access
        register_secret(settings.token)
        self.queue = TaskQueue.open(settings.queue_url, token=settings.token, endpoint=settings.endpoint)
        self.cached = dash.CachedQueue(self.queue)
        self.worker = dash.build_worker(settings) if settings.worker else None
        self.work_dir = self.worker.work_dir if self.worker else settings.work_dir
        self.startup_error = ""
        self._periods: tuple[float, list] | None = None
        try:
            self.queue.init()
        except Exception as exc:  # shown on the page; the worker keeps retrying on its own
            self.startup_error = redact(describe(exc))

    def periods(self) -> list:
        """The Space's paid periods (billing/periods.csv of the queue dataset), read at most every
        PERIODS_TTL_S; the last copy while the Hub does not answer."""
        now = time.monotonic()
        if self._periods is None or now - self._periods[0] > PERIODS_TTL_S:
            try:
                self._periods = (now, billing.parse(self.queue.read_file(billing.PERIODS_PATH)))
            except Exception:
                self._periods = (now, self._periods[1] if self._periods else [])
        return self._periods[1]

    def space_catalog(self):
        """The Space flavors and their prices: what the Space's paid periods are billed at."""
        return catalog(getattr(self.queue.store, "api", None), "spaces")

    def catalog(self):
        """The flavors a task may name here: the worker's executor's (Space or Job flavors), or
        $SCHEDULER_EXECUTOR's when this app runs no worker (flavors.catalog_for)."""
        if self.worker:
            return self.worker.catalog()
        return catalog_for(os.environ.get("SCHEDULER_EXECUTOR"), getattr(self.queue.store, "api", None))

    # ---------------------------------------------------------------- who is asking

    def user(self, request, profile) -> str | None:
        return self.access.identify(
            oauth_username=getattr(profile, "username", None),
            auth_username=getattr(request, "username", None) if request is not None else None,
            client_host=getattr(getattr(request, "client", None), "host", None) if request is not None else None,
        )

    def _require_change(self, user: str | None, action: str) -> None:
        if not self.access.can_change(user):
            raise gr.Error(self.access.refusal(user, action))

    def _require_read(self, user: str | None) -> None:
        if not self.access.can_read(user):
            raise gr.Error(self.access.refusal(user, "see the queue"))

    # ---------------------------------------------------------------- actions (shared by API and UI)

    def submit(self, user: str | None, task_id: str | None = None, **form) -> tuple[Task, bool]:
        """Add the form's task; returns (the stored task, whether this call created it). `task_id`
        is the client's key: a retried submit with the same one (a lost answer, a reload during the
        Space's restart, a double click) returns the first task and adds nothing."""
        self._require_change(user, "submit tasks")
        task = dash.new_task(submitted_by=user, task_id=task_id, **form)
        self.catalog().check(task.hardware)
        stored = self.queue.add(task)
        if stored.submitted_by != task.submitted_by:
            raise gr.Error(f"task id {task.id} is already taken: submit with another id (or none)")
        self.cached.invalidate()
        if self.worker:
            # Not at once: waking may switch hardware, and the switch restarts this process; the
            # caller's answer must be out first.
            threading.Timer(WAKE_DELAY_S, self.worker.wake).start()
        # The queue hands back our own Task object only when this call appended it; a retry gets
        # the stored row (the first submit won).
        return stored, stored is task

    def change(self, user: str | None, task_id: str, verb: str, reason: str = ""):
        self._require_change(user, f"{verb} tasks")
        task_id = (task_id or "").strip()
        if not task_id:
            raise gr.Error("Select a task in the table first (or paste its id).")
        try:
            if verb == "cancel":
                task = self.queue.cancel(task_id, reason or f"cancelled by {user}")
            else:
                task = self.queue.requeue(task_id)
        except (TaskNotFound, InvalidTransition) as exc:
            raise gr.Error(redact(str(exc))) from None
        self.cached.invalidate()
        if self.worker:
            self.worker.wake()
        return task

    def status(self) -> dict:
        summary = dash.runtime_summary(self.worker.status() if self.worker else None, self.settings.started)
        if self.startup_error:
            summary["last_error"] = summary["last_error"] or self.startup_error
        return summary

    # ---------------------------------------------------------------- the page

    def refresh(self, status_filter: str, user: str | None, selected: str | None = None, fresh: bool = False,
                added: Task | None = None):
        """What the page's timer shows: (table rows, runtime, progress, running log, bill, billing
        timeline, GPU plot, cost rows, selected task's detail, its log). `fresh` after the user's own
        change: from a read that sees it (a timer tick may show the copy a read under way replaces).
        `added`: the task this user just submitted, shown in the last copy without reading again
        (the form's answer must not wait for the Hub)."""
        summary = self.status()
        runtime = dash.runtime_html(summary, self._prices(self.catalog))
        if not self.access.can_read(user):
            hidden = self.access.refusal(user, "see the queue")
            return ([], runtime, dash.progress_html(0.0, hidden), "", hidden, "",
                    gr.update(value=dash.gpu_hours_per_day([]), visible=False), [], dash.task_detail_html(None), "")
        if added is None:
            tasks = self.cached.tasks(fresh=fresh)
        else:
            tasks = [t for t in self.cached.last_copy() if t.id != added.id] + [added]
        fraction, label, log = dash.running_view(summary["running_task"], self.work_dir)
        now = self.queue.clock()
        prices = self._prices(self.space_catalog)
        periods = [p for p in self.periods() if not self.settings.space_id or p.space == self.settings.space_id]
        costs = dash.cost_summary(tasks)
        totals = dash.bill_html(billing.bill(periods, tasks, prices, now), costs)
        per_day = dash.gpu_hours_per_day(tasks)
        if per_day.empty:
            totals += '<p class="gpu-empty">GPU hours per day: none yet (the plot shows once a task has run on a GPU).</p>'
        cost_rows = [[c["id"], c["hardware"], c["gpu_seconds"], c["cost_usd"]] for c in costs["tasks"]]
        task = dash.find_task(tasks, selected)
        log_label, task_log = dash.task_log(task, self.work_dir)
        return (dash.table_rows(dash.filter_tasks(tasks, status_filter), now), runtime,
                dash.progress_html(fraction, label), log, totals, dash.billing_timeline_html(periods, tasks, prices, now),
                gr.update(value=per_day, visible=not per_day.empty), cost_rows,
                dash.task_detail_html(task, now), gr.update(value=task_log, label=log_label))

    @staticmethod
    def _prices(catalog) -> dict:
        try:
            return catalog().prices()
        except Exception:  # a price list is never worth a failed refresh
            return {}

    def build(self):
        load_gradio()
        with gr.Blocks(title="space-scheduler") as blocks:
            gr.Markdown("# space-scheduler\nOn-demand GPU training: the Space idles on cpu-basic and "
                        "switches to a task's GPU only while there is work for it.")
            with gr.Row():
                if self.access.hugging_face_login:
                    gr.LoginButton()
                whoami = gr.Markdown(elem_id="whoami")

            with gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown("## Submit a task")
                    inputs, errors = {}, {}
                    inputs["model_id"] = gr.Textbox(label=FIELD_LABELS["model_id"], placeholder="OWNER/NAME",
                                                    elem_id="field-model_id")
                    errors["model_id"] = gr.Markdown(visible=False, elem_classes="field-error", elem_id="err-model_id")
                    inputs["dataset_id"] = gr.Textbox(label=FIELD_LABELS["dataset_id"], placeholder="OWNER/NAME",
                                                      elem_id="field-dataset_id")
                    errors["dataset_id"] = gr.Markdown(visible=False, elem_classes="field-error",
                                                       elem_id="err-dataset_id")
                    choices = dash.hardware_choices(self.catalog())
                    inputs["hardware"] = gr.Dropdown(choices=choices, value="t4-small", label=FIELD_LABELS["hardware"],
                                                     elem_id="field-hardware")
                    errors["hardware"] = gr.Markdown(visible=False, elem_classes="field-error", elem_id="err-hardware")
                    inputs["params"] = gr.Textbox(label=FIELD_LABELS["params"], value='{"epochs": 3}', lines=2,
                                                  elem_id="field-params")
                    errors["params"] = gr.Markdown(visible=False, elem_classes="field-error", elem_id="err-params")
                    with gr.Row():
                        inputs["priority"] = gr.Number(label=FIELD_LABELS["priority"], value=0, precision=0,
                                                       elem_id="field-priority")
                        inputs["max_attempts"] = gr.Number(label=FIELD_LABELS["max_attempts"], value=3, precision=0,
                                                           elem_id="field-max_attempts")
                        inputs["timeout_s"] = gr.Number(label=FIELD_LABELS["timeout_s"], value=3600, precision=0,
                                                        elem_id="field-timeout_s")
                    for name in ("priority", "max_attempts", "timeout_s"):
                        errors[name] = gr.Markdown(visible=False, elem_classes="field-error", elem_id=f"err-{name}")
                    submit_btn = gr.Button("Submit", variant="primary", elem_id="submit")
                    # The form's idempotency key, kept in the browser (it outlives the server's
                    # restarts): the same form sent twice makes one task; a new one after success.
                    submit_key = gr.Textbox(visible="hidden", elem_id="submit-key")
                    submitted = gr.Markdown(elem_id="submit-result")

                with gr.Column(scale=2):
                    gr.Markdown("## Runtime")
                    runtime_md = gr.HTML(elem_id="runtime")
                    progress = gr.HTML(dash.progress_html(0.0, "No task is running."), elem_id="progress")
                    log = gr.Textbox(label="Log of the running task", lines=8, max_lines=8, interactive=False,
                                     elem_id="log")

            gr.Markdown("## Queue")
            with gr.Row():
                status_filter = gr.Dropdown(dash.STATUS_CHOICES, value=dash.ALL, label="Status", scale=1,
                                            elem_id="status-filter")
                selected = gr.Textbox(label="Selected task id", scale=2, elem_id="selected-task")
                cancel_btn = gr.Button("Cancel", scale=0, elem_id="cancel")
                requeue_btn = gr.Button("Requeue", scale=0, elem_id="requeue")
            action_md = gr.Markdown(elem_id="action-result")
            table = gr.Dataframe(headers=dash.TABLE_HEADERS, value=[], interactive=False, wrap=True,
                                 datatype=dash.TABLE_DATATYPES, column_widths=dash.TABLE_WIDTHS,
                                 elem_id="queue-table")
            with gr.Row():
                with gr.Column(scale=3):
                    detail = gr.HTML(dash.task_detail_html(None), elem_id="task-detail")
                with gr.Column(scale=2):
                    task_log = gr.Textbox(label="Log", lines=14, max_lines=14, interactive=False,
                                          elem_id="task-log")

            gr.Markdown("## Cost")
            totals_md = gr.HTML(elem_id="cost-totals")
            timeline = gr.HTML(elem_id="billing-timeline")
            with gr.Row():
                plot = gr.BarPlot(dash.gpu_hours_per_day([]), x="day", y="gpu_hours", color="hardware",
                                  title="GPU hours per day", elem_id="gpu-plot", visible=False)
                cost_table = gr.Dataframe(headers=["id", "hardware", "GPU s", "USD"], value=[], interactive=False,
                                          elem_id="cost-table")

            views = [table, runtime_md, progress, log, totals_md, timeline, plot, cost_table, detail, task_log]

            def on_refresh(status_value, selected_id, request: gr.Request, profile: gr.OAuthProfile | None):
                return self.refresh(status_value, self.user(request, profile), selected_id)

            def on_own_change(status_value, selected_id, request: gr.Request, profile: gr.OAuthProfile | None):
                return self.refresh(status_value, self.user(request, profile), selected_id, fresh=True)

            # The filter and the selected task live in the browser too: the page reloads itself after
            # each restart of the Space and picks up where it was.
            # Its secret only has to outlive a restart (Gradio's default is new in every process); a
            # filter and a task id are nothing to hide.
            view = gr.BrowserState({"status": dash.ALL, "task": ""}, storage_key="space-scheduler-view",
                                   secret=hashlib.sha256(f"space-scheduler view {self.settings.queue_url}".encode()).hexdigest())

            def on_load(status_value, selected_id, kept, request: gr.Request, profile: gr.OAuthProfile | None):
                kept = kept if isinstance(kept, dict) else {}
                if kept.get("status") in dash.STATUS_CHOICES:
                    status_value = kept["status"]
                selected_id = str(kept.get("task") or selected_id or "")
                user = self.user(request, profile)
                if user is None:
                    who = "Not signed in: " + self.access.refusal(None, "submit tasks")
                elif self.access.can_change(user):
                    who = f"Signed in as **{user}**: you may submit, cancel and requeue."
                else:
                    who = f"Signed in as **{user}** (not on the allow-list: read only)."
                return (who, new_task_id(), status_value, selected_id, *self.refresh(status_value, user, selected_id))

            def on_submit(status_value, key, model_id, dataset_id, hardware, params, priority, max_attempts,
                          timeout_s, request: gr.Request, profile: gr.OAuthProfile | None):
                form = dict(model_id=model_id, dataset_id=dataset_id, hardware=hardware, params=params,
                            priority=priority, max_attempts=max_attempts, timeout_s=timeout_s)
                hide = {errors[name]: gr.update(value="", visible=False) for name in errors}
                user = self.user(request, profile)
                try:
                    task, created = self.submit(user, task_id=key or None, **form)
                except ValidationError as exc:
                    box = errors.get(exc.field, errors["params"])
                    hide[box] = gr.update(value=f"{FIELD_LABELS.get(exc.field, exc.field)}: {exc.message}",
                                          visible=True)
                    return {**hide, submitted: f"Not submitted: **{exc.field}** {exc.message}"}
                except gr.Error as exc:
                    return {**hide, submitted: f"Not submitted: {exc.message}"}
                said = (f"Submitted task `{task.id}`" if created else
                        f"Already submitted as task `{task.id}`: this form was sent twice, one task was made")
                # The table shows the task with the answer (the Space may restart onto its GPU
                # before the page's next refresh), from the last copy: no read waits for the Hub.
                rows = self.refresh(status_value, user, task.id, added=task)
                return {**hide, submitted: said, selected: task.id, submit_key: new_task_id(),
                        **dict(zip(views, rows))}

            def on_change(verb):
                def handler(task_id, status_value, request: gr.Request, profile: gr.OAuthProfile | None):
                    user = self.user(request, profile)
                    try:
                        task = self.change(user, task_id, verb)
                        if dash.is_stopping(task, self.queue.clock()):
                            message = (f"Task `{task.id}` is stopping: its run gets a few seconds to end, then "
                                       f"every process it started is killed. It shows CANCELLED once stopped.")
                        else:
                            message = f"Task `{task.id}` is now {task.status.value}."
                    except gr.Error as exc:
                        message = f"Not done: {exc.message}"
                    return (message, *self.refresh(status_value, user, task_id, fresh=True))
                return handler

            def on_select(evt: gr.SelectData):
                row = evt.row_value or []
                return row[0] if row else ""

            private = dict(api_visibility="private")
            watched = [status_filter, selected]
            blocks.load(on_load, [*watched, view], [whoami, submit_key, status_filter, selected, *views], **private)
            for component in watched:
                component.change(lambda status_value, selected_id: {"status": status_value, "task": selected_id},
                                 watched, view, show_progress="hidden", **private)
            gr.Timer(self.settings.refresh_s).tick(on_refresh, watched, views, show_progress="hidden", **private)
            status_filter.change(on_refresh, watched, views, show_progress="hidden", **private)
            # The answer goes out as soon as the task is stored; a fresh read follows in a second call.
            submit_btn.click(on_submit, [status_filter, submit_key, *inputs.values()],
                             [*errors.values(), submitted, selected, submit_key, *views], **private
                             ).then(on_own_change, watched, views, show_progress="hidden", **private)
            cancel_btn.click(on_change("cancel"), [selected, status_filter], [action_md, *views], **private)
            requeue_btn.click(on_change("requeue"), [selected, status_filter], [action_md, *views], **private)
            table.select(on_select, None, selected, **private)
            selected.change(on_refresh, watched, views, show_progress="hidden", **private)
            self._api()
        return blocks

    # ---------------------------------------------------------------- the named API (gradio_client)

    def _api(self) -> None:
        app = self

        def submit(model_id: str, dataset_id: str, hardware: str = "t4-small", params: str = "{}",
                   priority: int = 0, max_attempts: int = 3, timeout_s: int = 3600, task_id: str = "",
                   request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
            """Add a task; returns {"task_id", "created"}. Refused unless the caller is on the allow-list.
            `task_id` (optional, 1-64 letters, digits, '-' or '_'): your key for this submission. Send the
            same one again after a timeout or an error and no second task is made ("created" is false)."""
            try:
                task, created = app.submit(app.user(request, profile), task_id=task_id or None, model_id=model_id,
                                           dataset_id=dataset_id, hardware=hardware, params=params,
                                           priority=priority, max_attempts=max_attempts, timeout_s=timeout_s)
            except ValidationError as exc:
                raise gr.Error(f"{exc.field}: {exc.message}") from None
            return {"task_id": task.id, "created": created}

        def tasks(status: str = "ALL", request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list:
            """Every task (newest first), optionally only those with one status."""
            app._require_read(app.user(request, profile))
            return [dash.task_record(t) for t in dash.filter_tasks(app.cached.tasks(fresh=True), status)]

        def cancel(task_id: str, reason: str = "", request: gr.Request = None,
                   profile: gr.OAuthProfile | None = None) -> dict:
            """Cancel a PENDING or RUNNING task."""
            return dash.task_record(app.change(app.user(request, profile), task_id, "cancel", reason))

        def requeue(task_id: str, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
            """Put a FAILED or CANCELLED task back in the queue."""
            return dash.task_record(app.change(app.user(request, profile), task_id, "requeue"))

        def status(request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
            """Stage, hardware, the worker's last decision and reason, the running task and its progress."""
            app._require_read(app.user(request, profile))
            return app.status()

        for fn in (submit, tasks, cancel, requeue, status):
            gr.api(fn, api_name=fn.__name__)

    # ---------------------------------------------------------------- running

    def start_worker(self, signals: bool = True) -> None:
        if self.worker is None:
            return
        if signals:
            # Before launch: SIGTERM (the Hub restarting the Space) must release the GPU.
            self.worker.install_signal_handlers(exit_process=True)
        self.worker.start_thread()

    def launch(self, blocks, *, host: str | None = None, port: int | None = None,
               webhook_secret: str | None = None, **kwargs):
        """Serve the page. Raises UserError when the sign-in mode must not be served on `host`."""
        self.access.check_host(host)
        blocking = not kwargs.pop("prevent_thread_lock", False)
        result = blocks.queue(default_concurrency_limit=8).launch(
            server_name=host, server_port=port, auth=list(self.access.auth) or None, share=False,
            ssr_mode=False, show_error=True, css=CSS, head=HEAD, footer_links=[], prevent_thread_lock=True, **kwargs)
        secret = webhook_secret or os.environ.get("WEBHOOK_SECRET")
        if secret and self.worker is not None:
            # A Hub webhook on the queue dataset wakes the worker on any commit, from any client.
            # Only with a secret: an open endpoint would let anyone poke the worker.
            from scheduler.wake import mount_webhook

            mount_webhook(result[0], lambda sha: self.worker.wake(), secret=secret,
                          queue_repo=getattr(self.queue.store, "repo_id", None))
            # The page answers before the route exists, so a delivery in between found no route:
            # one look now covers every commit made before it.
            self.worker.wake()
        if blocking:
            blocks.block_thread()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="space-scheduler's Gradio app")
    parser.add_argument("--auth", default=None, help="user:password[,user:password] (default: $SCHEDULER_AUTH)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT")
                                                        or 7860))
    args = parser.parse_args(argv)
    try:
        access = Access.from_env(auth=args.auth)
        access.check_host(args.host)  # before the worker starts: a refused app must not take GPU work
        app = SchedulerApp(dash.AppSettings.from_env(APP_DIR), access)
    except UserError as exc:
        print(f"app: error: {redact(str(exc))}", file=sys.stderr, flush=True)
        return 2
    app.start_worker()
    blocks = app.build()
    print(f"{time.strftime('%H:%M:%S')} app: queue {app.queue.store.describe()}, {access.notice()}; {access!r}",
          flush=True)
    app.launch(blocks, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
