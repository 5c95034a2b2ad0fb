"""Errors raised by spark-ap.

Every error names what is wrong: the column, how many rows, and an example,
so that a scheduled pipeline fails with a message a person can act on.
"""

from __future__ import annotations

import sys


class SparkAPError(Exception):
    """Base class of every error spark-ap raises on purpose."""


class InvalidParamError(SparkAPError, ValueError):
    """A parameter is outside its allowed range or of the wrong kind."""


class InvalidInputError(SparkAPError, ValueError):
    """The input graph or feature table cannot be clustered as given."""


class MissingColumnError(InvalidInputError):
    """A required column is not in the input."""


class ColumnTypeError(InvalidInputError):
    """A column has a type spark-ap cannot use (a string similarity, mixed id types)."""


class InvalidValueError(InvalidInputError):
    """Some rows hold a null, NaN or infinite value where a number or id is required."""


class DuplicateEdgeError(InvalidInputError):
    """The same (src, dst) pair appears on more than one row.

    ``pairs`` pairs occur more than once, on ``rows`` rows in all; ``example``
    is one of them as ``(src, dst, count)``, named in the message by
    ``columns``, the input's id columns.
    """

    def __init__(self, pairs: int, rows: int, example: tuple, columns: tuple[str, str] = ("src", "dst")) -> None:
        self.pairs, self.rows, self.example, self.columns = pairs, rows, example, columns
        (src, dst), (a, b, count) = columns, example
        super().__init__(
            f"{pairs} (src, dst) pairs occur more than once ({rows} rows in all); "
            f"for example {src}={a!r}, {dst}={b!r} occurs {count} times. "
            "Combine them before clustering, or set duplicates='max' or 'mean' (--duplicates)."
        )

    def __reduce__(self):  # the arguments, not the message, rebuild it (e.g. across processes)
        return type(self), (self.pairs, self.rows, self.example, self.columns)

    def named(self, src: str, dst: str) -> DuplicateEdgeError:
        """The same error with the example named by the columns ``src`` and ``dst``."""
        return DuplicateEdgeError(self.pairs, self.rows, self.example, (src, dst))


class EmptyInputError(InvalidInputError):
    """The input has no rows."""


class StateMismatchError(SparkAPError):
    """A saved state belongs to another run (other params or another input) and cannot be resumed."""


class SaveUnreadableError(SparkAPError, RuntimeError):
    """The part files of a save could not be hashed (the hash job kept failing); the save is kept."""


class FolderInUseError(SparkAPError):
    """Another run holds the folder (an output folder, a state directory): two runs never write one at once."""


class GraphFramesUnavailableError(SparkAPError, RuntimeError):
    """The GraphFrames JVM package could not be resolved or is not on the session's classpath."""


class ClassicSessionRequiredError(SparkAPError, RuntimeError):
    """A feature that needs a classic SparkSession (its SparkContext, RDDs or JVM) was asked of a Spark Connect one."""


def reason(error: BaseException) -> str:
    """The first line of what went wrong: the JVM's message for a Py4J error, else Python's."""
    java = getattr(error, "java_exception", None)  # a Py4JJavaError's own message only names the call
    text = (java.toString() if java is not None else str(error)).strip() or type(error).__name__
    if "PythonException: Traceback" in text:
        # A Python task's error: the first line only says the job failed; the traceback's last line says why.
        traceback = text.split("PythonException: Traceback", 1)[1].split("\n\tat ", 1)[0]
        lines = [line.strip() for line in traceback.splitlines() if line.strip()]
        if len(lines) > 1:
            return lines[-1][:300]
    if text.startswith(("org.apache.spark.SparkException: Job aborted due to stage failure", "Job aborted")):
        # The first line only says which task failed; the task's own error is a cause further down
        # (a Parquet file without a footer: [FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] ...).
        causes = [line.split("Caused by: ", 1)[1] for line in text.splitlines() if line.startswith("Caused by: ")]
        if causes:
            return causes[-1][:300]
    return text.splitlines()[0][:300]


class ConvergenceWarning(UserWarning):
    """The run stopped at maxIter before the exemplar decisions settled."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside spark_ap and pyspark.

    Call it in the function that calls ``warnings.warn``: a warning then names
    the user's line however deep in spark-ap (or in pyspark.ml's ``fit``) it
    was raised.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("spark_ap", "pyspark"):
        frame, level = frame.f_back, level + 1
    return level
