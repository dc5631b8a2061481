"""Data in: the landing format, the loader (COPY, quarantine), importers of public and shop exports."""
