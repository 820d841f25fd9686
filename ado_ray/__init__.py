"""ado-ray: data-mixture studies (ADO and baselines) on Ray Train + Ray Tune."""

__version__ = "0.1.0"
