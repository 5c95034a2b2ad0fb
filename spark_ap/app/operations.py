"""How the Airflow DAG is run as a production job: its owner, retries, timeouts, concurrency,
who hears of a failure, and when a late run raises an alert.

Everything comes from the settings file's ``airflow`` section (``spark_ap/app/spark-ap.yaml``
documents each key and its default), read when Airflow parses the DAG file; like
:mod:`spark_ap.app.pipeline`, this module imports no Spark. Airflow's own classes are imported
where they are used, so the settings can be read (and checked) without Airflow.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from spark_ap.app.config import read_config

# The defaults of the section's operational keys; spark-ap.yaml says what each one does.
DEFAULTS: dict[str, Any] = {
    "owner": "spark-ap",
    "retries": 3,
    "retry_delay_seconds": None,  # None: Airflow's [core] default_task_retry_delay
    "max_retry_delay_seconds": 3600,
    "task_timeout_minutes": 360,
    "run_timeout_minutes": 720,
    "max_active_runs": 1,
    "pool": None,
    "notify_email": None,
    "deadline_minutes": 480,
}
TAGS = ["spark-ap", "clustering", "affinity-propagation"]
# The exit code of a spark-ap refusal (bad input, a folder in use, changed params): the same on every try.
REFUSED = 2


def operations(config: str | Path) -> dict[str, Any]:
    """The section's operational settings, with :data:`DEFAULTS` for those it does not set."""
    airflow = read_config(config).get("airflow", {}) if Path(config).is_file() else {}
    return {key: airflow[key] if airflow.get(key) is not None else default for key, default in DEFAULTS.items()}


def default_args(config: str | Path) -> dict[str, Any]:
    """Every task's ``default_args``: owner, retries with exponential backoff up to a maximum delay,
    a timeout (a hung job frees its worker slot and, as its process ends, its folder's lock), the
    pool, and the failure notifier."""
    ops = operations(config)
    args: dict[str, Any] = {
        "owner": ops["owner"],
        "retries": ops["retries"],
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=ops["max_retry_delay_seconds"]),
        "execution_timeout": timedelta(minutes=ops["task_timeout_minutes"]),
    }
    if ops["retry_delay_seconds"] is not None:
        args["retry_delay"] = timedelta(seconds=ops["retry_delay_seconds"])
    if ops["pool"]:
        args["pool"] = ops["pool"]
    notifier = failure_notifier(ops)
    if notifier is not None:
        args["on_failure_callback"] = [notifier]
    return args


def dag_arguments(config: str | Path) -> dict[str, Any]:
    """The ``@dag`` arguments of operations: run timeout, runs at once, tags, and the deadline alert."""
    ops = operations(config)
    out: dict[str, Any] = {
        "dagrun_timeout": timedelta(minutes=ops["run_timeout_minutes"]),
        "max_active_runs": ops["max_active_runs"],
        "tags": TAGS,
    }
    deadline = deadline_alert(ops)
    if deadline is not None:
        out["deadline"] = deadline
    return out


def failure_notifier(ops: dict[str, Any]):
    """An e-mail to ``notify_email`` (Airflow's SMTP notifier, through the ``smtp_default``
    connection) naming the DAG, the task, the date and the try; None without addresses. Any
    other notifier of Airflow's interface (Slack's, a pager's) goes in its place."""
    if not ops["notify_email"]:
        return None
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to=_addresses(ops["notify_email"]),
        subject="spark-ap: {{ ti.dag_id }}.{{ ti.task_id }} failed for {{ ds }} (try {{ ti.try_number }})",
        html_content=(
            "<p>{{ ti.dag_id }}.{{ ti.task_id }} failed for {{ ds }}, try {{ ti.try_number }} of "
            "{{ ti.max_tries + 1 }}: {{ exception }}</p><p>Log: {{ ti.log_url }}</p>"
        ),
    )


def deadline_alert(ops: dict[str, Any]):
    """A deadline alert for a run not finished ``deadline_minutes`` after it was queued (a scheduled
    run is queued as its data interval ends), e-mailed to ``notify_email``; None without either."""
    if not ops["notify_email"] or not ops["deadline_minutes"]:
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=ops["deadline_minutes"]),
        callback=AsyncCallback(
            "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
            kwargs={
                "to": _addresses(ops["notify_email"]),
                "subject": f"spark-ap: a run is not finished {ops['deadline_minutes']} minutes after it was queued",
                "html_content": "<p>A spark-ap pipeline run missed its deadline: {{ dag_run.run_id }}.</p>",
            },
        ),
    )


def _addresses(text: str) -> list[str]:
    return [address.strip() for address in str(text).split(",") if address.strip()]


def app_name(task: str) -> str:
    """The Spark application's name for ``task``: the DAG, the logical date and the try (templated)."""
    return "spark-ap-" + task + "-{{ dag.dag_id }}-{{ ds }}-try{{ ti.try_number }}"


class refusals_fail_at_once:  # noqa: N801 (a context manager, used as ``with refusals_fail_at_once():``)
    """Turn a spark-ap refusal raised in a task (:class:`~spark_ap.SparkAPError`: bad input, a folder
    in use) into Airflow's failure without retries: it would be refused the same way on every try."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, trace) -> bool:
        from spark_ap.errors import SparkAPError

        if isinstance(error, SparkAPError):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(error)) from error
        return False
