"""ADO options that make the policy act within a few dozen steps (shared by the loop tests)."""

ADO_FAST = {
    "warmup_steps": 4,
    "update_interval": 4,
    "ignore_steps": 0,
    "min_fit_points": 3,
    "subsample": 1,
    "smoothing": False,
    "log_eps_min": -5.0,
    "pibar_clock": "since_first_fit",
}
