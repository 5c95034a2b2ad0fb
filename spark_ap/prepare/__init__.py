"""From the user's tables to a graph the engines can run: checks, preferences, noise, builders."""
