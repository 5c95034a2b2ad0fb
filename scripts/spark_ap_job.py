"""spark-submit entry point of the spark-ap job; takes the options of ``spark-ap --help``.

spark-submit --master local[2] scripts/spark_ap_job.py --input edges.parquet --output runs/1
"""

from spark_ap.app.job import main

if __name__ == "__main__":
    raise SystemExit(main())
