"""The application around the library: the ``spark-ap`` job (:mod:`~spark_ap.app.job`), its run
folders (:mod:`~spark_ap.app.export`), its YAML settings (:mod:`~spark_ap.app.config`) and what
the Airflow DAG's tasks do (:mod:`~spark_ap.app.pipeline`). The library never imports it."""
