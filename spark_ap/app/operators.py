"""The DAG's Airflow operators: Airflow's own, where a spark-ap run needs something of them.

Imported by the DAG file only (this module imports Airflow; :mod:`spark_ap.app.operations` does not).
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from spark_ap.app.operations import REFUSED


class SparkApSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator, but a spark-ap refusal (exit code :data:`~spark_ap.app.operations.REFUSED`:
    bad input, a folder in use, other params on a finished date) fails the task without its retries:
    it would fail the same way on every try. Any other failure (a lost cluster, a dependency not
    resolved, a killed driver) is retried."""

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as error:
            if f"Error code is: {REFUSED}." in str(error):
                raise AirflowFailException(
                    f"spark-ap refused the run (exit code {REFUSED}: its reason is the log's 'spark-ap: error:' line); "
                    "not retried"
                ) from error
            raise
