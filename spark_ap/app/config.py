"""The YAML settings file of the job and the DAG (see ``spark_ap/app/spark-ap.yaml``).

Its sections ``ap``, ``features`` and ``input`` hold the params of
:data:`spark_ap.params.SPECS` with that section (and ``input.kind``, the
table's kind); ``spark`` holds Spark settings; ``airflow`` the DAG's schedule
and default params. Like :mod:`spark_ap.params`, this module imports no Spark:
the DAG reads the file when it is parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spark_ap.errors import InvalidParamError
from spark_ap.params import INPUT_KINDS, SPECS, in_section

SECTIONS = ("ap", "features", "input", "spark", "airflow")
# The default settings, in the installed package: the DAG's when SPARK_AP_CONFIG names no other file
# (the job reads a settings file only when --config names one).
DEFAULT_CONFIG = Path(__file__).resolve().with_name("spark-ap.yaml")
# The airflow settings that are SparkSubmitOperator's arguments of the same name
# (spark_ap.app.pipeline.submit_options; py_files and ship_code it combines).
SUBMIT_SETTINGS = (
    "conn_id",
    "deploy_mode",
    "driver_memory",
    "executor_memory",
    "executor_cores",
    "num_executors",
    "archives",
    "env_vars",
)
# Keys of a section besides its params: the job's own state folder, the input's kind, and
# the DAG's schedule and default params (spark_ap.app.pipeline.dag_settings).
EXTRA_KEYS = {
    "ap": {"stateDir"},
    "features": set(),
    "input": {"kind"},
    "airflow": {
        "schedule",
        "intervals",
        "catchup",
        "input",
        "kind",
        "output_root",
        # How the DAG submits the job.
        *SUBMIT_SETTINGS,
        "py_files",
        "ship_code",
        # How it runs in production (spark_ap.app.operations).
        "owner",
        "retries",
        "retry_delay_seconds",
        "max_retry_delay_seconds",
        "task_timeout_minutes",
        "run_timeout_minutes",
        "max_active_runs",
        "pool",
        "notify_email",
        "deadline_minutes",
    },
}


def read_config(config: str | Path) -> dict[str, dict[str, Any]]:
    """The sections of a YAML settings file, checked for unknown names."""
    path = Path(config)
    if not path.is_file():
        raise InvalidParamError(f"The config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # plain data only: no tags that build objects
    # ValueError: a date that does not exist (2001-02-30); RecursionError: lists nested thousands deep.
    except (yaml.YAMLError, OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidParamError(f"{path} is not a plain YAML settings file: {yaml_problem(error)}") from error
    if not isinstance(loaded, dict):
        raise InvalidParamError(f"{path} must hold sections ap, input and spark; it holds {type(loaded).__name__}")
    unknown = set(loaded) - set(SECTIONS)
    if unknown:  # sorted as text: YAML keys may be numbers, booleans or null too
        raise InvalidParamError(f"{path}: unknown section(s) {sorted(unknown, key=str)}; expected {sorted(SECTIONS)}")
    malformed = [name for name, values in loaded.items() if values is not None and not isinstance(values, dict)]
    if malformed:
        name = malformed[0]
        raise InvalidParamError(
            f"{path}: section {name} must hold 'name: value' settings; it holds {type(loaded[name]).__name__} "
            f"{loaded[name]!r:.60}"
        )
    sections = {section: dict(values or {}) for section, values in loaded.items()}
    for section, extra in EXTRA_KEYS.items():
        known = {spec.name for spec in in_section(section)} | extra
        unknown_keys = sorted(set(sections.get(section, {})) - known, key=str)
        if unknown_keys:
            elsewhere = [f"{name} belongs in {SPECS[name].section}" for name in unknown_keys if name in SPECS]
            hint = f" ({'; '.join(elsewhere)})" if elsewhere else ""
            raise InvalidParamError(
                f"{path}: unknown {section} setting(s) {unknown_keys}{hint}; known: {sorted(known)}"
            )
    check_values(path, sections)
    return sections


def yaml_problem(error: Exception) -> str:
    """One line of what a YAML parser (or the file's reading) said: its problem and where.

    PyYAML's own message spans lines (it quotes the line under the problem), and a
    scheduler's log shows a task's first line only.
    """
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is not None and problem:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


# The settings of EXTRA_KEYS: the values each takes (a type, or the allowed values).
EXTRA_VALUES: dict[str, type | tuple] = {
    "kind": INPUT_KINDS,
    "stateDir": str,
    "schedule": str,
    "intervals": ("data", "trigger"),
    "catchup": bool,
    "input": str,
    "output_root": str,
    "conn_id": str,
    "deploy_mode": ("client", "cluster"),
    "driver_memory": str,
    "executor_memory": str,
    "executor_cores": int,
    "num_executors": int,
    "py_files": str,
    "archives": str,
    "env_vars": dict,
    "ship_code": str,
    "owner": str,
    "retries": int,
    "retry_delay_seconds": int,
    "max_retry_delay_seconds": int,
    "task_timeout_minutes": int,
    "run_timeout_minutes": int,
    "max_active_runs": int,
    "pool": str,
    "notify_email": str,
    "deadline_minutes": int,
}
# The EXTRA_VALUES that are paths or names, which cannot be blank (an empty schedule means none).
PATHS = {"input", "output_root", "conn_id", "ship_code"}
_KINDS = {bool: "true or false", str: "a string", int: "a whole number", dict: "a mapping of names to values"}


def check_values(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    """Refuse a setting whose value its param (or, for the other keys, :data:`EXTRA_VALUES`) does not take,
    naming the file, the section and the setting: the same checks as the command line's."""
    for section, values in sections.items():
        for name, value in values.items():
            if section == "spark" or value is None:
                continue
            if name in SPECS:  # a param of the section's, or the job's own (stateDir)
                try:
                    SPECS[name].check(value)
                except InvalidParamError as error:
                    raise InvalidParamError(f"{path}: {section}.{error}") from None
                continue
            allowed = EXTRA_VALUES[name]
            if isinstance(allowed, tuple) and value not in allowed:
                raise InvalidParamError(f"{path}: {section}.{name} must be one of {allowed}; got {value!r}")
            # bool is an int to Python, not to a settings file: true is no number of executors.
            if isinstance(allowed, type) and (
                not isinstance(value, allowed) or allowed is int and isinstance(value, bool)
            ):
                raise InvalidParamError(f"{path}: {section}.{name} must be {_KINDS[allowed]}; got {value!r}")
            if name in PATHS and not value.strip():
                # Relative paths are relative to the checkout: a blank one would be the checkout itself.
                raise InvalidParamError(f"{path}: {section}.{name} must be a path, not empty; got {value!r}")
