"""Testing aids, not used by the library: numpy references of the AP equations (the tests' oracles
besides scikit-learn, and the benchmark's numpy baseline)."""
