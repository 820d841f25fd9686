"""ODM: Online Data Mixing (Albalak, Pan, Raffel and Wang, 2023, arXiv 2312.02406).

"Efficient Online Data Mixing For Language Model Pre-Training" treats each domain as an arm of
an adversarial bandit and runs EXP3 with an adaptive exploration rate and a smoothed,
importance-weighted estimate of each arm's reward, the reward being the domain's training loss
(a domain the model still finds hard is worth sampling). Sources:

- the paper's Algorithm 1 (the update equations below);
- the authors' code, github.com/alon-albalak/online-data-mixing at commit ``edbfdad``
  (``megatron/data/data_sampling_utils.py`` and ``megatron/training.py`` there are identical to
  commit ``aca0acb``, which the README links as "the data mixing implementation described in
  the paper"): ``SmoothedMeanWeightUpdater``, ``data_sampling_utils.py`` L455-528, driven by
  ``train_mixed_minibatch`` in ``training.py`` L915-1335.

The paper's update, which ``update_form="paper"`` (the default) follows, with steps counted
t = 1, 2, ... (our step ``s`` is the paper's t = s + 1), eps_0 = 1/K and R_k = 0:

    eps_t   = min(1/K, sqrt(ln K / (K t)))
    pi_t    = (1 - K eps_t) * softmax(eps_{t-1} R) + eps_t              (the weights of step t)
    R_k    <- a R_k + (1 - a) * L_k(t) / pi_t,k     for each domain k sampled at step t

with ``a`` = ``smoothing`` and L_k(t) the mean training loss of domain k's sequences in step t.

Time convention: ``observe(step=s, ...)`` records step s; ``weights()`` then returns the
weights of step s + 1. Steps ``< warmup_steps`` use the prior exactly (bitwise) and their
observations are not rewards (the authors' warmup, below). The first weights after warmup are
uniform up to rounding (R = 0). ``diagnostics()``: ``odm_reward`` (the smoothed estimates R)
and ``odm_eps`` (the exploration rate in the current weights, repeated per domain); empty
while the weights are the prior.

Options: ``smoothing`` (a; default 0.9, the authors' ``data_sampling_smoothing_factor``,
``neox_args.py`` L1042 and ``SmoothedMeanWeightUpdater`` L460; their run scripts use 0.9,
``scripts/train_1B_ema.sh``, and 0.5, ``scripts/train_1B_ema_0.5smoothing.sh``);
``reward_scale`` (c, default 1: the reward is c * loss); ``min_exploration`` (a floor on
eps_t, default 0 as the authors; see 3 below); ``reward`` (``train_loss`` as the paper, or
``val_loss``: see 5); ``warmup_steps`` (default 0, the authors' default, ``neox_args.py``
L1007; their runs use 2,000 of 100,000 steps, ``scripts/train_1B_ema.sh``); ``update_form``
(see 1); ``prior`` / ``token_counts`` (the warmup weights only; see 2).

Where we differ from the paper or the authors' code, and why
-------------------------------------------------------------
1. **The authors' code is not the paper's update.** The path their training loop runs
   (``group_update``, L501-528, called once per step at ``training.py`` L1267) smooths
   ``exp(loss)`` without dividing by the sampling probability (L511; the plain mean is
   commented out at L509), and its weights are linear in the estimate,
   ``pi = (1 - K eps) R / sum(R) + eps`` (L515-521; the exponential form is commented out at
   L520; ``prev_eps`` cancels), with the eps of the update just made (L504), i.e. one step
   behind the paper's. Default ``update_form="paper"`` implements the paper's equations above;
   ``update_form="authors_code"`` implements the code's: R_k <- a R_k + (1 - a) exp(c L_k),
   and the weights of step s are ``(1 - K eps_s) R / sum(R) + eps_s`` (uniform while sum(R)
   is 0), the prior until the first update, as the code starts from its given weights
   (L467-468).
2. **Prior and warmup.** The paper starts from R = 0, i.e. uniform weights, and we do too.
   During the authors' warmup (``training.py`` L1028-1118) batches are drawn from the whole
   corpus ("sample from the full dataset uniformly", ``neox_args.py`` L1010; their runs set
   the Pile's own weights, ``alon_configs/train_data_weights/original_pile.yml``, which are
   also the updater's initial weights) and no reward is recorded
   (``UpdateScheduler.requires_update``, L319-320: ``iteration > warmup_steps``). So the
   policy takes the runner's prior (``token_counts``: the corpus' token shares; ``prior=`` to
   override; uniform when neither is given in Python) and uses it exactly for the steps
   ``< warmup_steps``, ignoring their losses. The clock t counts the warmup steps, as the
   authors' ``iteration`` does. With the default ``warmup_steps=0`` the prior is never used.
3. **min_exploration.** eps_t = min(1/K, max(min_exploration, sqrt(ln K / (K t)))). As eps_t
   decays, both the exploration term and the softmax's inverse temperature eps_{t-1} go to 0,
   and since the smoothed R stays bounded (it is not a cumulative sum as in EXP3), the weights
   drift back to uniform and stop responding to the rewards. The floor keeps the policy
   responsive. The floor is ours (neither the paper nor the authors' code has one); 0 is their
   rule; values >= 1/K give uniform weights.
4. **Batches, not samples.** The paper draws one domain per micro-batch; our runner reports,
   per step, each domain's sequence count and mean loss. Each domain present in the step gets
   one update with its mean loss, as the authors' ``group_update`` does with its per-domain
   mean (``training.py`` L1262-1267); domains absent from the step keep their estimate. The
   probability we divide by is the policy's weights for that step, which are the weights the
   sampler used when ``training.mixture_lag`` is 1 (with a larger lag the sampler used the
   weights of ``lag - 1`` steps earlier).
5. **val_loss reward** (not in the paper; the authors' ``NaiveValidationWeightUpdater``,
   L530-621, is a different rule). With ``reward="val_loss"`` the estimates are updated, in
   ``observe_eval``, from the held-out losses of every domain measured: R_k <- a R_k +
   (1 - a) c v_k (``authors_code``: exp(c v_k)), without importance weighting, since every
   domain is observed; training losses are then not rewards. Estimates are then about K times
   smaller than with importance-weighted training rewards: ``reward_scale`` can compensate.
6. **Missing or bad losses.** A domain with a count of 0, or a non-finite loss, is not
   updated at that step (the paper only updates sampled arms and does not consider bad
   losses). An update that would make an estimate non-finite (an absurdly large loss) is
   dropped for the whole step, so the weights never hold NaN.
7. **reward_scale** (default 1, the paper's) is ours: the authors' ``Exp3WeightUpdater``
   divides its rewards by 10 "so that cumulative reward doesn't explode" (L383, L429); their
   ``SmoothedMeanWeightUpdater`` does not scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import MixturePolicy
from .options import Needs, Option

__all__ = ["ODM_OPTIONS", "OdmPolicy"]

#: ODM's options, with the authors' defaults.
ODM_OPTIONS: tuple[Option, ...] = (
    Option(
        "smoothing",
        0.9,
        "float",
        "smoothing factor a of the reward estimates (authors' default)",
        low=0.0,
        high=1.0,
        high_open=True,
    ),
    Option(
        "reward_scale",
        1.0,
        "float",
        "the reward is reward_scale * loss",
        low=0.0,
        low_open=True,
    ),
    Option(
        "min_exploration",
        0.0,
        "float",
        "floor on the exploration rate eps_t (0: the authors'; >= 1/K: uniform)",
        low=0.0,
        high=1.0,
    ),
    Option(
        "reward",
        "train_loss",
        "choice",
        "reward: the step's training loss (paper) or held-out losses (observe_eval)",
        choices=("train_loss", "val_loss"),
    ),
    Option("warmup_steps", 0, "int", "first steps sampled from the prior, without rewards", low=0),
    Option(
        "update_form",
        "paper",
        "choice",
        "the paper's update, or the authors' code's (exp(loss) smoothing, linear weights)",
        choices=("paper", "authors_code"),
    ),
)


class OdmPolicy(MixturePolicy):
    """ODM: EXP3 over domains rewarded by their smoothed, importance-weighted training loss.

    The prior is only the weights of the warmup steps. See the module docstring for the update,
    the options and every deviation from the paper and the authors' code."""

    name = "odm"
    options_spec = ODM_OPTIONS
    needs = Needs(prior=True)
    search_space = {
        "smoothing": {"type": "uniform", "low": 0.5, "high": 0.99},
        "reward_scale": {"type": "loguniform", "low": 0.1, "high": 10.0},
    }

    def __init__(self, num_domains: int, **options: Any) -> None:
        super().__init__(num_domains)
        mu = self._resolve_options(options)
        assert mu is not None
        o = self._resolved
        k = self._k
        self._mu = mu
        self._a = float(o["smoothing"])
        self._1ma = 1.0 - self._a
        self._scale = float(o["reward_scale"])
        self._b = self._1ma * self._scale  # (1 - a) c: the paper form's reward coefficient
        self._eps_min = float(o["min_exploration"])
        self._inv_k = 1.0 / k
        self._lnk_k = math.log(k) / k
        self._warmup = int(o["warmup_steps"])
        self._paper = o["update_form"] == "paper"
        self._train_reward = o["reward"] == "train_loss"
        # Weights of step s are the prior for s < start: the paper form starts at the end of
        # warmup (R = 0: uniform), the code's form after its first update.
        self._start = self._warmup if self._paper else self._warmup + 1
        self._r = np.zeros(k)
        self._pi = self._weights_for(0)

    # -- public ------------------------------------------------------------

    @property
    def wants_eval_feedback(self) -> bool:
        """True with ``reward="val_loss"``: the rewards are the held-out losses."""
        return not self._train_reward

    def weights(self) -> np.ndarray:
        return self._pi.copy()

    def exploration(self, t: int) -> float:
        """eps_t for the paper's step t (1-based; eps_0 = 1/K), with the floor and the 1/K cap."""
        if t <= 0:
            return self._inv_k
        e = math.sqrt(self._lnk_k / t)
        if e < self._eps_min:
            e = self._eps_min
        return e if e < self._inv_k else self._inv_k

    def diagnostics(self) -> dict[str, np.ndarray]:
        """``odm_reward`` (the smoothed reward estimates) and ``odm_eps`` (the exploration rate
        in the current weights); empty while the weights are the prior."""
        s = self._steps
        if s < self._start:
            return {}
        eps = self.exploration(s + 1 if self._paper else s)
        return {"odm_reward": self._r.copy(), "odm_eps": np.full(self._k, eps)}

    # -- updates -----------------------------------------------------------

    def _weights_for(self, s: int) -> np.ndarray:
        """The weights of step ``s`` (0-based) from the current estimates."""
        if s < self._start:
            return self._mu
        r = self._r
        if self._paper:
            eps = self.exploration(s + 1)
            z = r * self.exploration(s)
            z -= z.max()
            np.exp(z, out=z)
        else:
            eps = self.exploration(s)
            z = r.copy()
        tot = float(z.dot(self._ones))
        room = 1.0 - self._k * eps
        if room < 0.0:
            room = 0.0
        if not (tot > 0.0 and math.isfinite(tot)):
            return np.full(self._k, self._inv_k)
        z *= room / tot
        z += eps
        return z

    def _update(self, present: np.ndarray | None, values: np.ndarray, weighted: bool) -> None:
        """R_k <- a R_k + (1 - a) reward_k for the domains ``present`` (all if None)."""
        # An absurd loss may overflow: the finiteness check below drops such an update.
        with np.errstate(over="ignore", invalid="ignore"):
            if self._paper:
                term = values / self._pi if weighted else values.copy()
                term *= self._b
            else:
                term = np.exp(values * self._scale)
                term *= self._1ma
            new = self._r * self._a
            new += term
        if present is not None:
            new = np.where(present, new, self._r)
        if math.isfinite(float(new.dot(self._ones))):
            self._r = new

    def _observe(
        self, step: int, counts: np.ndarray, losses: np.ndarray, c_min: float, total: float
    ) -> None:
        if self._train_reward and step >= self._warmup:
            if c_min > 0.0 and math.isfinite(float(losses.dot(self._ones))):
                self._update(None, losses, True)
            else:
                present = (counts > 0.0) & np.isfinite(losses)
                if present.any():
                    clean = np.where(present, losses, 0.0)
                    self._update(present, clean, True)
        self._pi = self._weights_for(step + 1)

    def _observe_eval(self, step: int, val_losses: np.ndarray) -> None:
        if self._train_reward or step < self._warmup:
            return
        present = np.isfinite(val_losses)
        if not present.any():
            return
        if present.all():
            self._update(None, val_losses, False)
        else:
            self._update(present, np.where(present, val_losses, 0.0), False)
        self._pi = self._weights_for(step)

    # -- state ---------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"reward_estimates": self._r.copy(), "pi": self._pi.copy()}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        k = self._k
        try:
            r = np.array(state["reward_estimates"], dtype=np.float64).reshape(k)
            pi = np.array(state["pi"], dtype=np.float64).reshape(k)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a valid odm state: {err}") from None
        self._r = r
        self._pi = pi
