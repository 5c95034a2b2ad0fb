"""spark-submit's application file for the spark-ap job, inside the installed package (or the zip
shipped with ``--py-files``), so that a DAG or a user finds it wherever spark-ap is installed
(``spark_ap.session.job_script()``; ``spark-ap package`` prints the whole spark-submit command).
It takes the options of ``spark-ap --help``.
"""

import os
import sys

# Run as a file, its own folder comes first on sys.path, where its neighbours (config.py, job.py,
# stream/) would shadow top-level modules of those names: spark-ap is imported as a package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from spark_ap.app.job import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
