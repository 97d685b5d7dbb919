"""Membership-inference evaluation: how much a global model tells about its training data.

Two attacks score every evaluated sample, members (samples of the clients' training
data) and as many non-members (held out from every client): the loss threshold attack
and a shadow-model attack (Shokri et al.). ``metrics`` turns scores into ROC AUC and the
attacker's advantage; ``sets`` fixes who is a member from the seed; ``evaluate`` spreads
the work over ranks through a `World` passed in (no MPI import here).
"""

from .evaluate import PrivacyEvaluator, plan_privacy, shadow_size
from .metrics import auc_null_std, best_advantage, roc_auc
from .sets import MembershipSets, membership_sets, shadow_split, split_holdout

__all__ = [
    "MembershipSets",
    "PrivacyEvaluator",
    "auc_null_std",
    "best_advantage",
    "membership_sets",
    "plan_privacy",
    "roc_auc",
    "shadow_size",
    "shadow_split",
    "split_holdout",
]
