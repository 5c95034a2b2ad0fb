"""The pyspark.ml estimators and the model they fit."""
